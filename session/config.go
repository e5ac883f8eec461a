package session

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of PROTOCOL.md's limits.
const (
	DefaultMaxMessageBytes = 65536
	DefaultMaxChannels     = 128
	DefaultRate            = 100
	DefaultBurst           = 200
	DefaultQueueFrames     = 1024
	DefaultQueueBytes      = 4 << 20
	DefaultRequestTimeout  = 5 * time.Second
	DefaultMaxRequests     = 16
	DefaultPrivatePrefix   = "@"

	// MaxMessageBytesLimit is the largest session.max_message_bytes: NATS
	// carries a client frame whole, and its payloads are at most 1 MiB by
	// default (the broker raises its own limit to fit the envelope).
	MaxMessageBytesLimit = 1 << 20

	// rateStrikes is how many rate-limited frames in a row close the
	// connection with 1008.
	rateStrikes = 10
)

// Config holds the limits and rules of client sessions. The zero value is
// usable: New fills every zero field with its default.
type Config struct {
	// MaxMessageBytes is the largest client frame; larger ones close the
	// connection with 1009. The gateway enforces it while reading.
	MaxMessageBytes int `toml:"max_message_bytes"`
	// MaxChannels is how many channels one connection may be a member of.
	MaxChannels int `toml:"max_channels"`
	// Rate and Burst are the token bucket of client frames, one per user on
	// this node (all its connections share it), or per client IP for
	// anonymous connections.
	Rate  float64 `toml:"rate"`
	Burst int     `toml:"burst"`
	// QueueFrames and QueueBytes bound a connection's outgoing queue; a
	// client whose queue passes either is closed with 4001.
	QueueFrames int `toml:"queue_frames"`
	QueueBytes  int `toml:"queue_bytes"`
	// RequestTimeout bounds how long a custom frame with an id waits for a
	// backend's reply before the client gets a timeout error.
	RequestTimeout time.Duration `toml:"request_timeout"`
	// MaxRequests bounds the custom frames with an id one connection may
	// have waiting for a backend's reply; more get too_many_requests.
	MaxRequests int `toml:"max_requests"`
	// PrivatePrefix marks private channels: a channel whose name starts with
	// it, as in "@alice" or "@alice.inbox", may be joined only by the user
	// named between the prefix and the first '.'. "none" turns the rule off.
	PrivatePrefix string `toml:"private_prefix"`

	// PresenceLimit, when not 0, stops join and leave control frames in
	// channels with more than this many members on this node: in a channel
	// of n members every join costs n frames, so n joins cost n²/2. 0 keeps
	// PROTOCOL.md's rule: every member is told of every join and leave.
	PresenceLimit int `toml:"presence_limit"`

	// Node is this node's name, sent in welcome frames and events.
	Node string `toml:"-"`
	// Logger receives the hub's log lines; nil discards them.
	Logger *slog.Logger `toml:"-"`
}

func (c *Config) setDefaults() {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxChannels == 0 {
		c.MaxChannels = DefaultMaxChannels
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.QueueFrames == 0 {
		c.QueueFrames = DefaultQueueFrames
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.PrivatePrefix == "" {
		c.PrivatePrefix = DefaultPrivatePrefix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work, naming its key.
// Every number has a range: a limit that is off by a typo (a rate of NaN,
// a timeout of 1ns) would quietly turn protection off.
func (c *Config) Validate() error {
	switch {
	case c.MaxMessageBytes < 64 || c.MaxMessageBytes > MaxMessageBytesLimit:
		return fmt.Errorf("session.max_message_bytes: %d is not between 64 and %d", c.MaxMessageBytes, MaxMessageBytesLimit)
	case c.MaxChannels < 1 || c.MaxChannels > 100_000:
		return fmt.Errorf("session.max_channels: %d is not between 1 and 100000", c.MaxChannels)
	case !(c.Rate >= 0.01 && c.Rate <= 1e6): // also refuses NaN
		return fmt.Errorf("session.rate: %v is not between 0.01 and 1000000", c.Rate)
	case c.Burst < 1 || c.Burst > 1_000_000:
		return fmt.Errorf("session.burst: %d is not between 1 and 1000000", c.Burst)
	case c.QueueFrames < 1 || c.QueueFrames > 1<<20:
		return fmt.Errorf("session.queue_frames: %d is not between 1 and %d", c.QueueFrames, 1<<20)
	case c.QueueBytes < c.MaxMessageBytes || c.QueueBytes > 1<<30:
		return fmt.Errorf("session.queue_bytes: %d is not between session.max_message_bytes (%d) and %d", c.QueueBytes, c.MaxMessageBytes, 1<<30)
	case c.PresenceLimit < 0 || c.PresenceLimit > 1_000_000_000:
		return fmt.Errorf("session.presence_limit: %d is not between 0 and 1000000000", c.PresenceLimit)
	case c.RequestTimeout < 10*time.Millisecond || c.RequestTimeout > 5*time.Minute:
		return fmt.Errorf("session.request_timeout: %v is not between 10ms and 5m0s", c.RequestTimeout)
	case c.MaxRequests < 1 || c.MaxRequests > 10_000:
		return fmt.Errorf("session.max_requests: %d is not between 1 and 10000", c.MaxRequests)
	case c.PrivatePrefix != "none" && !validPrefix(c.PrivatePrefix):
		return fmt.Errorf("session.private_prefix: %q must be 1 to 16 characters of A-Z a-z 0-9 _ - : @ =, or none", c.PrivatePrefix)
	case c.Node != "" && !ValidNode(c.Node):
		return fmt.Errorf("node: %q is not a valid node name (A-Z a-z 0-9 _ -, 1 to 64 bytes)", c.Node)
	}
	return nil
}

// validPrefix reports whether p can start a channel name.
func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 16 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !nameByte[p[i]] {
			return false
		}
	}
	return true
}

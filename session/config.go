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
	DefaultPrivatePrefix   = "@"

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
	// Rate and Burst are the per-connection token bucket of client frames.
	Rate  float64 `toml:"rate"`
	Burst int     `toml:"burst"`
	// QueueFrames and QueueBytes bound a connection's outgoing queue; a
	// client whose queue passes either is closed with 4001.
	QueueFrames int `toml:"queue_frames"`
	QueueBytes  int `toml:"queue_bytes"`
	// RequestTimeout bounds how long a custom frame with an id waits for a
	// backend's reply before the client gets a timeout error.
	RequestTimeout time.Duration `toml:"request_timeout"`
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
	if c.PrivatePrefix == "" {
		c.PrivatePrefix = DefaultPrivatePrefix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work, naming its key.
func (c *Config) Validate() error {
	switch {
	case c.MaxMessageBytes < 64:
		return fmt.Errorf("session.max_message_bytes: %d is below 64", c.MaxMessageBytes)
	case c.MaxChannels < 1:
		return fmt.Errorf("session.max_channels: %d is below 1", c.MaxChannels)
	case c.Rate <= 0:
		return fmt.Errorf("session.rate: %v must be positive", c.Rate)
	case c.Burst < 1:
		return fmt.Errorf("session.burst: %d is below 1", c.Burst)
	case c.QueueFrames < 1:
		return fmt.Errorf("session.queue_frames: %d is below 1", c.QueueFrames)
	case c.QueueBytes < c.MaxMessageBytes:
		return fmt.Errorf("session.queue_bytes: %d is below session.max_message_bytes", c.QueueBytes)
	case c.PresenceLimit < 0:
		return fmt.Errorf("session.presence_limit: %d is negative", c.PresenceLimit)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("session.request_timeout: %v must be positive", c.RequestTimeout)
	case c.Node != "" && !ValidNode(c.Node):
		return fmt.Errorf("node: %q is not a valid node name (A-Z a-z 0-9 _ -, 1 to 64 bytes)", c.Node)
	}
	return nil
}

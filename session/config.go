package session

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pushgrid/pushgrid/internal/schema"
)

const (
	// MaxMessageBytesLimit is the largest session.max_message_bytes: NATS
	// carries a client frame whole, and its payloads are at most 1 MiB by
	// default (the broker raises its own limit to fit the envelope).
	MaxMessageBytesLimit = 1 << 20

	// rateStrikes is how many rate-limited frames in a row close the
	// connection with 1008.
	rateStrikes = 10
)

// Config holds the limits and rules of client sessions: the [session]
// table of the configuration. Each field's tags declare its key once: the
// TOML key, the flag and environment variable of pushgrid serve, the
// default and the help text. The zero value is usable: New fills every
// zero field with its default.
type Config struct {
	MaxMessageBytes int `toml:"max_message_bytes" name:"max-message-bytes" env:"PUSHGRID_MAX_MESSAGE_BYTES" default:"65536" help:"Largest client frame in bytes (64 to 1048576); a larger one closes the connection with 1009."`
	MaxChannels     int `toml:"max_channels" name:"max-channels" env:"PUSHGRID_MAX_CHANNELS" default:"128" help:"Channels one connection may be a member of (1 to 100000); past it, too_many_channels."`
	// Rate and Burst are the token bucket of client frames, one per user on
	// this node (all its connections share it), or per client IP for
	// anonymous connections.
	Rate  float64 `toml:"rate" name:"rate" env:"PUSHGRID_RATE" default:"100" help:"Client frames per second, per user on the node, or per client IP for anonymous connections; every frame counts, pings and pongs too (0.01 to 1000000). Over it: rate_limited; ten times in a row: close 1008."`
	Burst int     `toml:"burst" name:"burst" env:"PUSHGRID_BURST" default:"200" help:"Frames a client may send at once above the rate: the token bucket's size (1 to 1000000)."`
	// QueueFrames and QueueBytes bound a connection's outgoing queue; a
	// client whose queue passes either is closed with 4001.
	QueueFrames    int           `toml:"queue_frames" name:"queue-frames" env:"PUSHGRID_QUEUE_FRAMES" default:"1024" help:"Outgoing queue bound per connection, in frames (1 to 1048576); a client that does not read and passes it is closed with 4001."`
	QueueBytes     int           `toml:"queue_bytes" name:"queue-bytes" env:"PUSHGRID_QUEUE_BYTES" default:"4194304" help:"Outgoing queue bound per connection, in bytes (max_message_bytes to 1 GiB); past it, close 4001."`
	RequestTimeout time.Duration `toml:"request_timeout" name:"request-timeout" env:"PUSHGRID_REQUEST_TIMEOUT" default:"5s" help:"How long a custom frame with an id waits for a backend's reply before the client gets timeout (10ms to 5m)."`
	MaxRequests    int           `toml:"max_requests" name:"max-requests" env:"PUSHGRID_MAX_REQUESTS" default:"16" help:"Custom frames with an id one connection may have waiting for a reply (1 to 10000); more get too_many_requests. They are cancelled when it disconnects."`
	// PrivatePrefix marks private channels: a channel whose name starts with
	// it, as in "@alice" or "@alice.inbox", may be joined only by the user
	// named between the prefix and the first '.'. "none" turns the rule off.
	PrivatePrefix string `toml:"private_prefix" name:"private-prefix" env:"PUSHGRID_PRIVATE_PREFIX" default:"@" help:"Channels <prefix><user> and <prefix><user>.<more> (@alice, @alice.inbox) may be joined only by that user; none turns the rule off."`

	// Rules are the channel rules, the [[channels]] tables (see Rule); a
	// channel none matches gets DefaultRule's. Their keys are not flags:
	// they are read from the file.
	Rules []Rule `toml:"-" kong:"-"`
	// Refresh checks the token of a client's refresh frame and returns who
	// it names (auth.mode jwt); nil answers every refresh bad_token.
	Refresh func(token string) (Identity, error) `toml:"-" kong:"-"`
	// Leeway is added to a token's exp before its connection is closed with
	// 4003 (auth.leeway).
	Leeway time.Duration `toml:"-" kong:"-"`
	// History is the store of the channels whose rule keeps history
	// (PROTOCOL.md §6); nil: those channels are served without it (no seq,
	// no replay).
	History HistoryStore `toml:"-" kong:"-"`
	// Presence is a channel's presence across the cluster (PROTOCOL.md
	// §7), the server API's; nil: this node's members only.
	Presence func(ctx context.Context, channel string) (count int, users map[string]int, err error) `toml:"-" kong:"-"`

	// Node is this node's name, sent in welcome frames and events.
	Node string `toml:"-" kong:"-"`
	// Logger receives the hub's log lines; nil discards them.
	Logger *slog.Logger `toml:"-" kong:"-"`
}

func (c *Config) setDefaults() {
	schema.Defaults(c)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Check reports the first setting that cannot work, naming its key.
// Every number has a range: a limit that is off by a typo (a rate of NaN,
// a timeout of 1ns) would quietly turn protection off.
func (c *Config) Check() error {
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
	case c.RequestTimeout < 10*time.Millisecond || c.RequestTimeout > 5*time.Minute:
		return fmt.Errorf("session.request_timeout: %v is not between 10ms and 5m0s", c.RequestTimeout)
	case c.MaxRequests < 1 || c.MaxRequests > 10_000:
		return fmt.Errorf("session.max_requests: %d is not between 1 and 10000", c.MaxRequests)
	case c.PrivatePrefix != "none" && !validPrefix(c.PrivatePrefix):
		return fmt.Errorf("session.private_prefix: %q must be 1 to 16 characters of A-Z a-z 0-9 _ - : @ =, or none", c.PrivatePrefix)
	case c.Node != "" && !ValidNode(c.Node):
		return fmt.Errorf("node: %q is not a valid node name (A-Z a-z 0-9 _ -, 1 to 64 bytes)", c.Node)
	}
	return checkRules(c.Rules)
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

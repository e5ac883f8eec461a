package bench

import (
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"github.com/pushgrid/pushgrid/broker"
)

// Defaults of Config's zero fields. The CLI's flags default to these too.
const (
	DefaultPrefix   = broker.DefaultPrefix
	DefaultSubs     = 1000
	DefaultChannels = 1
	DefaultDuration = 10 * time.Second
	DefaultSize     = 64
	DefaultWindow   = 64
	DefaultDialers  = 64
	DefaultTimeout  = 120 * time.Second
	DefaultProto    = ProtoNative
)

// The protocols a subscriber can speak (Config.Proto).
const (
	// ProtoNative is PROTOCOL.md §1 on the gateway's /ws.
	ProtoNative = "native"
	// ProtoSocketIO is Socket.IO v5 over Engine.IO v4's WebSocket
	// transport (PROTOCOL.md §8), on /socket.io/ of the gateway: the
	// channel joined with emit("join", channel, ack), each message an
	// event.
	ProtoSocketIO = "socketio"
)

// maxPayload bounds Config.Size: the payload is one WebSocket frame.
const maxPayload = 1 << 20

// Config is one benchmark run. A zero field takes its default (Default*),
// except where its comment gives a meaning to zero.
type Config struct {
	URLs []string // gateway WebSocket URLs; subscribers are spread over them
	// Proto is what the subscribers speak: ProtoNative, or ProtoSocketIO
	// on the same host as each URL (its path is replaced).
	Proto    string
	NATS     string        // where the publisher connects; only needed with Rates
	Prefix   string        // subject prefix
	Subs     int           // subscriber connections
	Channels int           // channels; subscriber i joins channel i % Channels
	Rates    []float64     // msg/s of each step, 0 = closed loop; none = connect, join, hold
	Duration time.Duration // of each step's measurement
	Warmup   time.Duration // before each step's measurement; 0 = none
	Hold     time.Duration // with no steps: how long the joined connections stay idle; 0 = not at all
	Size     int           // payload bytes
	Window   int           // closed loop: messages in flight
	SrcIPs   []net.IP      // local addresses to dial from, round robin; none = the system's choice
	// UserPrefix names subscriber i user <UserPrefix><i>: in the user
	// query parameter, or in its token or cookie with AuthSecret or Hook;
	// "" connects them anonymously. A node rate-limits the
	// frames of anonymous connections per client IP, so thousands of them
	// from one address would be limited together.
	UserPrefix string
	// AuthSecret, when set, is the HS256 key of a node in auth.mode jwt:
	// each subscriber sends a token of its own (sub: its user) as
	// Authorization: Bearer. The tokens are signed before the connect
	// phase, which measures connecting, not signing.
	AuthSecret string
	// Hook makes the load generator the backend of a node in auth.mode
	// hook: it answers the node's auth requests (<Prefix>.auth, over NATS)
	// with the user each subscriber names in its uid cookie.
	Hook    bool
	Dialers int // connections being opened at once
	// ConnectRate paces the connect phase at this many connects a second
	// (0: as fast as the dialers go), so that two servers are compared at
	// the same offered load: a node's work per connect depends on how many
	// arrive together (announcements are gathered and written in batches).
	ConnectRate float64
	// Recover, when not 0, runs the recovery phase instead of the steps:
	// the subscribers leave, Recover messages are published to each
	// channel (history channels of the server, through its server API),
	// and they come back with since (native protocol only).
	Recover  int
	Timeout  time.Duration // bound of the connect phase
	PID      int           // server process on this machine to measure, 0 for none
	Progress io.Writer     // live progress line, nil for none
}

// ConfigError is a Config field whose value cannot run. Field is the
// field's name in Config, so a caller can say it in its own terms (a CLI,
// its flag).
type ConfigError struct {
	Field  string // "Subs"
	Value  string // the value refused, "" when there is none
	Reason string // what the value needs to be
}

func (e *ConfigError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("bench: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("bench: %s %s: %s", e.Field, e.Value, e.Reason)
}

func (c *Config) setDefaults() {
	orDefault(&c.Proto, DefaultProto)
	orDefault(&c.Prefix, DefaultPrefix)
	orDefault(&c.Subs, DefaultSubs)
	orDefault(&c.Channels, DefaultChannels)
	orDefault(&c.Duration, DefaultDuration)
	orDefault(&c.Size, DefaultSize)
	orDefault(&c.Window, DefaultWindow)
	orDefault(&c.Dialers, DefaultDialers)
	orDefault(&c.Timeout, DefaultTimeout)
}

// orDefault sets *v to def if it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *Config) validate() error {
	bad := func(field string, value any, reason string) error {
		return &ConfigError{Field: field, Value: fmt.Sprint(value), Reason: reason}
	}
	switch {
	case len(c.URLs) == 0:
		return &ConfigError{Field: "URLs", Reason: "no gateway URL"}
	case c.Proto != ProtoNative && c.Proto != ProtoSocketIO:
		return bad("Proto", c.Proto, fmt.Sprintf("need %s or %s", ProtoNative, ProtoSocketIO))
	case c.NATS == "" && len(c.Rates) > 0:
		return &ConfigError{Field: "NATS", Reason: "no NATS URL for the publisher, which every rate step needs"}
	case c.NATS == "" && c.Hook:
		return &ConfigError{Field: "NATS", Reason: "no NATS URL for the auth hook to answer on"}
	case c.Hook && c.AuthSecret != "":
		return &ConfigError{Field: "Hook", Reason: "a node authenticates with a token or a hook, not both"}
	case c.UserPrefix == "" && (c.Hook || c.AuthSecret != ""):
		return &ConfigError{Field: "UserPrefix", Reason: "a token or the hook names each subscriber's user, so it needs a prefix"}
	case c.Subs < 1:
		return bad("Subs", c.Subs, "need at least 1")
	case c.Channels < 1 || c.Channels > c.Subs:
		return bad("Channels", c.Channels, fmt.Sprintf("need 1 to %d, the subscribers", c.Subs))
	case c.Size < minPayload || c.Size > maxPayload:
		return bad("Size", c.Size, fmt.Sprintf("need %d bytes to 1 MiB", minPayload))
	case c.Window < 1:
		return bad("Window", c.Window, "need at least 1")
	case c.Dialers < 1:
		return bad("Dialers", c.Dialers, "need at least 1")
	case !(c.ConnectRate >= 0 && c.ConnectRate <= 1e6):
		return bad("ConnectRate", c.ConnectRate, "need 0 (unpaced) to 1000000")
	case c.Recover < 0 || c.Recover > 100_000:
		return bad("Recover", c.Recover, "need 0 to 100000 messages")
	case c.Recover > 0 && (len(c.Rates) > 0 || c.Proto != ProtoNative || c.NATS == ""):
		return &ConfigError{Field: "Recover", Reason: "recovery runs instead of rate steps (an empty rate), with the native protocol and a NATS URL"}
	}
	if c.Proto == ProtoSocketIO {
		for _, u := range c.URLs {
			if _, err := socketIOURL(u); err != nil {
				return &ConfigError{Field: "URLs", Value: u, Reason: "the Socket.IO URL is taken from it: " + err.Error()}
			}
		}
	}
	for _, r := range c.Rates {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return bad("Rates", r, "a rate is a finite number, not negative")
		}
	}
	return nil
}

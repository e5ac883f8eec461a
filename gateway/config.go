package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/pushgrid/pushgrid/sticky"
)

// Defaults.
const (
	DefaultListen           = ":8000"
	DefaultDrain            = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultFrameTimeout     = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultAuth             = "none"
	// readBufferSize is each connection's gws read buffer. Client frames are
	// small; larger ones are read straight into their own buffer, so a small
	// read buffer costs nothing but saves memory on every idle connection.
	readBufferSize = 256
)

// Config is the gateway's configuration. The zero value is usable: New
// fills every zero field with its default.
type Config struct {
	// Listen is the HTTP and WebSocket address.
	Listen string `toml:"listen"`
	// Workers is the number of SO_REUSEPORT listeners; 0 means one per CPU.
	Workers int `toml:"workers"`
	// Sticky steers connections to workers: "ip" (one client IP, one
	// worker) or "none".
	Sticky string `toml:"sticky"`
	// TrustedProxies are CIDRs or addresses whose X-Forwarded-For is
	// believed when finding the client IP.
	TrustedProxies []string `toml:"trusted_proxies"`
	// Origins are the browser pages, besides the gateway's own host, that
	// may open a WebSocket: origins such as "https://app.example.com" or
	// "https://*.example.com", or "*" for any. Requests without an Origin
	// (not from a browser) are always let through.
	Origins []string `toml:"origins"`
	// Drain is how long clients keep being served after a shutdown signal
	// before they are closed with 1001.
	Drain time.Duration `toml:"drain"`
	// WriteTimeout bounds one blocking write to a client, and the whole
	// response to a plain HTTP request.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// FrameTimeout bounds how long a client frame may take to arrive, from
	// its first byte to its last (for a fragmented message, from the first
	// byte of its first fragment to the last byte of its last); a client
	// over it is closed with 1008 "frame timeout".
	FrameTimeout time.Duration `toml:"frame_timeout"`
	// HandshakeTimeout bounds the arrival of a request head, and of its
	// body within the same time again.
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// IdleTimeout closes a keep-alive HTTP connection idle for this long.
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxConnections caps the client connections open at once (WebSockets,
	// HTTP connections and handshakes in progress); one more is answered
	// 503 {"error":"server full"}. 0 means what the open-file limit allows
	// (see MaxConnectionsFor).
	MaxConnections int `toml:"max_connections"`
	// Auth decides the user before the upgrade. "none": the user query
	// parameter, else the first join's user field, else anon-<conn>.
	Auth string `toml:"auth"`

	// Authorize, for programs that embed pushgrid, replaces Auth: it returns
	// the user of a request or an *HTTPError to refuse the upgrade.
	Authorize func(r *http.Request) (user string, err error) `toml:"-"`
	// Logger receives the gateway's log lines.
	Logger *slog.Logger `toml:"-"`
	// Metrics are served on /metrics along with the gateway's own.
	Metrics []prometheus.Collector `toml:"-"`
}

// HTTPError refuses an upgrade with Status and a JSON body {"error":Msg}.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Sticky == "" {
		c.Sticky = string(sticky.ModeIP)
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Auth == "" {
		c.Auth = DefaultAuth
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work, naming its key. It
// expects the defaults filled in: New validates after filling them, and
// a zero duration other than Drain is out of range.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("gateway.listen: %w", err)
	}
	if err := inRange("gateway.workers", c.Workers, 1, 1024); err != nil {
		return err
	}
	if _, err := sticky.ParseMode(c.Sticky); err != nil {
		return fmt.Errorf("gateway.sticky: %w", err)
	}
	if _, err := parseOrigins(c.Origins); err != nil {
		return fmt.Errorf("gateway.origins: %w", err)
	}
	if _, err := sticky.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("gateway.trusted_proxies: %w", err)
	}
	for _, d := range []struct {
		key    string
		v      time.Duration
		lo, hi time.Duration
	}{
		{"gateway.drain", c.Drain, 0, time.Hour},
		{"gateway.write_timeout", c.WriteTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"gateway.frame_timeout", c.FrameTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"gateway.handshake_timeout", c.HandshakeTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"gateway.idle_timeout", c.IdleTimeout, 100 * time.Millisecond, time.Hour},
	} {
		if err := inRange(d.key, d.v, d.lo, d.hi); err != nil {
			return err
		}
	}
	if err := inRange("gateway.max_connections", c.MaxConnections, 0, maxMaxConnections); err != nil {
		return err
	}
	if c.Auth != "none" && c.Authorize == nil {
		return fmt.Errorf("gateway.auth: %q is not supported (only \"none\")", c.Auth)
	}
	return nil
}

// inRange reports v outside [lo, hi] as an error naming key.
func inRange[T int | time.Duration](key string, v, lo, hi T) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: %v is not between %v and %v", key, v, lo, hi)
	}
	return nil
}

// maxMaxConnections bounds gateway.max_connections.
const maxMaxConnections = 1 << 24

// MaxConnectionsFor is the default MaxConnections of a process whose
// open-file limit is nofile: the limit less a reserve for the node's own
// files and sockets (NATS clients and routes, listeners, logs), of a tenth
// of the limit but at least 64 and at most 1024. It is at least 1.
func MaxConnectionsFor(nofile uint64) int {
	reserve := max(64, min(1024, nofile/10))
	if nofile <= reserve {
		return 1
	}
	return int(max(1, min(nofile-reserve, maxMaxConnections)))
}

// openFileLimit is the process's soft RLIMIT_NOFILE, which the Go runtime
// raises to the hard limit at start.
func openFileLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024 // the usual soft limit
	}
	return rl.Cur
}

package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/pushgrid/pushgrid/sticky"
)

// Defaults.
const (
	DefaultListen       = ":8000"
	DefaultDrain        = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultAuth         = "none"
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
	// Drain is how long clients keep being served after a shutdown signal
	// before they are closed with 1001.
	Drain time.Duration `toml:"drain"`
	// WriteTimeout bounds one blocking write to a client.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// Auth decides the user before the upgrade. "none": the user query
	// parameter, else the first join's user field, else anon-<conn>.
	Auth string `toml:"auth"`

	// Authorize, for programs that embed pushgrid, replaces Auth: it returns
	// the user of a request or an *HTTPError to refuse the upgrade.
	Authorize func(r *http.Request) (user string, err error) `toml:"-"`
	// Logger receives the gateway's log lines.
	Logger *slog.Logger `toml:"-"`
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
	if c.Auth == "" {
		c.Auth = DefaultAuth
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work, naming its key.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("gateway.listen: %w", err)
	}
	if c.Workers < 1 || c.Workers > 1024 {
		return fmt.Errorf("gateway.workers: %d is not between 1 and 1024", c.Workers)
	}
	if _, err := sticky.ParseMode(c.Sticky); err != nil {
		return fmt.Errorf("gateway.sticky: %w", err)
	}
	if _, err := sticky.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("gateway.trusted_proxies: %w", err)
	}
	if c.Drain < 0 {
		return errors.New("gateway.drain: must not be negative")
	}
	if c.WriteTimeout <= 0 {
		return errors.New("gateway.write_timeout: must be positive")
	}
	if c.Auth != "none" && c.Authorize == nil {
		return fmt.Errorf("gateway.auth: %q is not supported (only \"none\")", c.Auth)
	}
	return nil
}

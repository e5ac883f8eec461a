package gateway

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/pushgrid/pushgrid/internal/schema"
	"github.com/pushgrid/pushgrid/session"
	"github.com/pushgrid/pushgrid/sticky"
)

const (
	// readBufferSize is each connection's gws read buffer. Client frames are
	// small; larger ones are read straight into their own buffer, so a small
	// read buffer costs nothing but saves memory on every idle connection.
	readBufferSize = 256
)

// Config is the gateway's configuration: the [gateway] table. Each field's
// tags declare its key once: the TOML key, the flag and environment
// variable of pushgrid serve, the default and the help text. The zero value
// is usable: New fills every zero field with its default.
type Config struct {
	Listen  string `toml:"listen" name:"listen" env:"PUSHGRID_LISTEN" default:":8000" help:"WebSocket (/ws), demo page (/), browser client (/pushgrid.js), /healthz, /readyz and /metrics address."`
	Workers int    `toml:"workers" name:"workers" env:"PUSHGRID_WORKERS" default:"0" help:"SO_REUSEPORT worker listeners (0 to 1024); 0 means one per CPU."`
	Sticky  string `toml:"sticky" name:"sticky" env:"PUSHGRID_STICKY" default:"ip" help:"ip: every connection from one client IP goes to the same worker; none: the kernel spreads them."`
	// TrustedProxies are CIDRs or addresses whose X-Forwarded-For is
	// believed when finding the client IP.
	TrustedProxies []string `toml:"trusted_proxies" name:"trusted-proxy" env:"PUSHGRID_TRUSTED_PROXIES" help:"A proxy (CIDR or address) whose X-Forwarded-For is believed: the client IP is the right-most hop that is not one."`
	// Origins are the browser pages, besides the gateway's own host, that
	// may open a WebSocket: origins such as "https://app.example.com" or
	// "https://*.example.com", or "*" for any. Requests without an Origin
	// (not from a browser) are always let through.
	Origins []string `toml:"origins" name:"origin" env:"PUSHGRID_ORIGINS" help:"A browser origin besides the gateway's own host that may open a WebSocket, such as https://app.example.com or https://*.example.com; * for any. Other pages get 403; clients that send no Origin always pass."`
	// Drain is how long clients keep being served after a shutdown signal
	// before they are closed with 1001. The node applies it (it drains the
	// hub); it is a gateway key since it is the gateway that goes away.
	Drain time.Duration `toml:"drain" name:"drain" env:"PUSHGRID_DRAIN" default:"5s" help:"After SIGTERM or SIGINT: /readyz turns 503 and the listeners close at once; clients are served this long (or until none is left), then closed with 1001 (up to 1h; 0 means the default)."`
	// WriteTimeout bounds one blocking write to a client, and the whole
	// response to a plain HTTP request.
	WriteTimeout time.Duration `toml:"write_timeout" name:"write-timeout" env:"PUSHGRID_WRITE_TIMEOUT" default:"10s" help:"Longest blocking write to one client, and longest response to a plain HTTP request (100ms to 5m)."`
	// FrameTimeout bounds how long a client frame may take to arrive, from
	// its first byte to its last (for a fragmented message, from the first
	// byte of its first fragment to the last byte of its last); a client
	// over it is closed with 1008 "frame timeout".
	FrameTimeout time.Duration `toml:"frame_timeout" name:"frame-timeout" env:"PUSHGRID_FRAME_TIMEOUT" default:"10s" help:"A client frame (or fragmented message) that has begun must end within it, else close 1008 (100ms to 5m)."`
	// HandshakeTimeout bounds the arrival of a request head, and of its
	// body within the same time again.
	HandshakeTimeout time.Duration `toml:"handshake_timeout" name:"handshake-timeout" env:"PUSHGRID_HANDSHAKE_TIMEOUT" default:"10s" help:"A request head must arrive within it after the connection opens, and a request body within it again; else the connection is closed (100ms to 5m)."`
	IdleTimeout      time.Duration `toml:"idle_timeout" name:"idle-timeout" env:"PUSHGRID_IDLE_TIMEOUT" default:"60s" help:"An idle keep-alive HTTP connection is closed after it (100ms to 1h)."`
	// MaxConnections caps the client connections open at once (WebSockets,
	// HTTP connections and handshakes in progress); one more is answered
	// 503 {"error":"server full"}. 0 means what the open-file limit allows
	// (see MaxConnectionsFor).
	MaxConnections int `toml:"max_connections" name:"max-connections" env:"PUSHGRID_MAX_CONNECTIONS" default:"0" help:"Client connections at once (WebSockets, HTTP connections, handshakes); one more is answered 503 {\"error\":\"server full\"} at once. 0: the open-file limit less a reserve, max(64, min(1024, limit/10))."`
	// TLSCert and TLSKey are PEM files: the gateway's certificate (its
	// chain, leaf first) and the certificate's private key. Set both to
	// serve wss:// and https:// only, on every worker listener; New loads
	// them, so a renewed certificate takes a restart.
	TLSCert string `toml:"tls_cert" name:"tls-cert" env:"PUSHGRID_TLS_CERT" help:"PEM certificate (chain, leaf first) of the gateway; with gateway.tls_key, every worker listener serves wss:// and https:// only, and the TLS handshake counts against gateway.handshake_timeout. Empty: plain ws:// and http://."`
	TLSKey  string `toml:"tls_key" name:"tls-key" env:"PUSHGRID_TLS_KEY" help:"PEM private key of gateway.tls_cert; set both or neither."`
	// Authorize decides who a client is before its upgrade (auth.mode jwt
	// or hook, or a program that embeds pushgrid): it returns the
	// identity of a request from remote (the client address, after
	// trusted proxies), or an error to refuse the upgrade: an *HTTPError
	// says the status and message, any other error is a 403. Nil: the
	// user query parameter names the user (auth.mode none).
	Authorize func(r *http.Request, remote netip.Addr) (session.Identity, error) `toml:"-" kong:"-"`
	// Listeners, when set, gives the gateway its n (Workers) listening
	// sockets in place of open, which opens them as Listen, Workers and
	// Sticky say: an in-place restart hands them from one process of the
	// node to the next instead.
	Listeners func(n int, open func() ([]net.Listener, error)) ([]net.Listener, error) `toml:"-" kong:"-"`
	// Logger receives the gateway's log lines.
	Logger *slog.Logger `toml:"-" kong:"-"`
	// Metrics are served on /metrics along with the gateway's own.
	Metrics []prometheus.Collector `toml:"-" kong:"-"`
}

// HTTPError refuses an upgrade with Status and a JSON body {"error":Msg}.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func (c *Config) setDefaults() {
	schema.Defaults(c)
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Check reports the first setting that cannot work, naming its key. It
// expects the defaults filled in (New fills them; the CLI gives every key
// its default): a zero duration other than Drain is out of range.
func (c *Config) Check() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("gateway.listen: %w", err)
	}
	if err := inRange("gateway.workers", c.Workers, 0, 1024); err != nil {
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
	switch {
	case c.TLSCert == "" && c.TLSKey != "":
		return errors.New("gateway.tls_cert: not set, but gateway.tls_key is: set both or neither")
	case c.TLSKey == "" && c.TLSCert != "":
		return errors.New("gateway.tls_key: not set, but gateway.tls_cert is: set both or neither")
	}
	// The files too, as for the other keys that name files: pushgrid
	// config check then finds a certificate that is missing or does not
	// fit its key.
	_, err := c.loadTLS()
	return err
}

// loadTLS is the TLS configuration of the worker listeners, nil when
// TLSCert and TLSKey are not set.
func (c *Config) loadTLS() (*tls.Config, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	certPEM, err := os.ReadFile(c.TLSCert)
	if err != nil {
		return nil, fmt.Errorf("gateway.tls_cert: %w", err)
	}
	keyPEM, err := os.ReadFile(c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("gateway.tls_key: %w", err)
	}
	if !hasPrivateKey(keyPEM) {
		return nil, fmt.Errorf("gateway.tls_key: %s holds no PEM private key", c.TLSKey)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway.tls_cert: %s with key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: WebSockets here are HTTP/1.1 upgrades, and net/http
		// serves the other requests over HTTP/1.1.
		NextProtos: []string{"http/1.1"},
	}, nil
}

// hasPrivateKey reports whether b holds a PEM private key block, so that
// a wrong key file is blamed on gateway.tls_key rather than on the pair.
func hasPrivateKey(b []byte) bool {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return false
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return true
		}
	}
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

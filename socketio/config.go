package socketio

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pushgrid/pushgrid/internal/schema"
)

// Config is the [socketio] table. Each field's tags declare its key once:
// the TOML key, the flag and environment variable of pushgrid serve, the
// default and the help text.
type Config struct {
	Path         string        `toml:"path" name:"socketio-path" env:"PUSHGRID_SOCKETIO_PATH" default:"/socket.io/" help:"Where Socket.IO clients connect on the gateway port: a path that starts and ends with /."`
	PingInterval time.Duration `toml:"ping_interval" name:"socketio-ping-interval" env:"PUSHGRID_SOCKETIO_PING_INTERVAL" default:"25s" help:"Engine.IO heartbeat: the server pings each client this often (50ms to 5m)."`
	PingTimeout  time.Duration `toml:"ping_timeout" name:"socketio-ping-timeout" env:"PUSHGRID_SOCKETIO_PING_TIMEOUT" default:"20s" help:"A client that has not answered a ping, or not polled, within this is dropped and leaves its channels (50ms to 5m)."`
	MaxPayload   int           `toml:"max_payload" name:"socketio-max-payload" env:"PUSHGRID_SOCKETIO_MAX_PAYLOAD" default:"1000000" help:"Largest long-polling request body, in bytes (1024 to 100000000); one Socket.IO packet is also bounded by session.max_message_bytes."`

	// Node is this node's name: the owner part of every session id.
	Node string `toml:"-" kong:"-"`
	// Logger receives the server's log lines.
	Logger *slog.Logger `toml:"-" kong:"-"`
}

func (c *Config) setDefaults() {
	schema.Defaults(c)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Check reports the first setting that cannot work, naming its key.
func (c *Config) Check() error {
	switch {
	case len(c.Path) < 2 || !strings.HasPrefix(c.Path, "/") || !strings.HasSuffix(c.Path, "/") || strings.ContainsAny(c.Path, " ?#{}"):
		return fmt.Errorf("socketio.path: %q must start and end with / (such as /socket.io/)", c.Path)
	case c.Path == "/ws/":
		return fmt.Errorf("socketio.path: %q is the native protocol's", c.Path)
	case c.PingInterval < 50*time.Millisecond || c.PingInterval > 5*time.Minute:
		return fmt.Errorf("socketio.ping_interval: %v is not between 50ms and 5m0s", c.PingInterval)
	case c.PingTimeout < 50*time.Millisecond || c.PingTimeout > 5*time.Minute:
		return fmt.Errorf("socketio.ping_timeout: %v is not between 50ms and 5m0s", c.PingTimeout)
	case c.MaxPayload < 1024 || c.MaxPayload > 100_000_000:
		return fmt.Errorf("socketio.max_payload: %d is not between 1024 and 100000000", c.MaxPayload)
	}
	return nil
}

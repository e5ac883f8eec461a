package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/pushgrid/pushgrid/auth"
	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/history"
	"github.com/pushgrid/pushgrid/internal/loopback"
	"github.com/pushgrid/pushgrid/internal/schema"
	"github.com/pushgrid/pushgrid/session"
	"github.com/pushgrid/pushgrid/socketio"
)

// Config is a node's whole configuration; its TOML form is the
// configuration file. Each table is its package's Config, whose tags
// declare every key once.
type Config struct {
	Node string `toml:"node" name:"node" env:"PUSHGRID_NODE" help:"Node name, unique in the cluster: A-Z a-z 0-9 _ -, 1 to 64 bytes (default: the host name's first label)."`
	// PIDFile is written by pushgrid serve, not by the node: a Go program
	// that embeds a node writes its own.
	PIDFile string         `toml:"pid_file" name:"pid-file" env:"PUSHGRID_PID_FILE" help:"File that always holds the process id of the process serving this node: written once the node is ready, and by the new process of an in-place restart (SIGHUP) once it takes over, for systemd's PIDFile= and scripts. Its directory must exist. Empty: none."`
	Gateway gateway.Config `toml:"gateway" embed:""`
	NATS    broker.Config  `toml:"nats" embed:""`
	Session session.Config `toml:"session" embed:""`
	Auth    auth.Config    `toml:"auth" embed:""`
	// SocketIO is the Socket.IO server on the gateway port (PROTOCOL.md §8).
	SocketIO socketio.Config `toml:"socketio" embed:""`
	// History is where history channels' messages are stored (PROTOCOL.md
	// §6); which channels keep history is the [[channels]] rules' say.
	History history.Config `toml:"history" embed:""`
	// Channels are the channel rules, the [[channels]] tables (PROTOCOL.md
	// §5), first match wins; they are read from the file only.
	Channels []session.Rule `toml:"channels" kong:"-"`
	Admin    AdminConfig    `toml:"admin" embed:""`
	Log      LogConfig      `toml:"log" embed:""`
}

// AdminConfig is the [admin] table.
type AdminConfig struct {
	Listen string `toml:"listen" name:"admin-listen" env:"PUSHGRID_ADMIN_LISTEN" default:"127.0.0.1:6003" help:"Admin page (/), admin API (/api/...) and Go's pprof; keep it private. Empty turns it off."`
	// Token, when set, is required of every admin request, pprof
	// included (the page's own files and its login excepted). It is the
	// admin API's only lock: an address beyond loopback needs one.
	Token string `toml:"token" secret:"" name:"admin-token" env:"PUSHGRID_ADMIN_TOKEN" help:"When set, every admin request (the API and /debug/pprof/) needs Authorization: Bearer <token>, or the admin page's login (a session cookie), else 401. Required when admin.listen is reachable beyond loopback. 16 to 256 printable ASCII bytes, no spaces; prefer the environment variable to the flag, which other users of the host can read."`
}

// Bounds of admin.token, the NATS secrets' own: the admin API does not
// slow down guesses, so a shorter token could be guessed.
const (
	minAdminToken = 16
	maxAdminToken = 256
)

// LogConfig is the [log] table.
type LogConfig struct {
	Level  string `toml:"level" name:"log-level" env:"PUSHGRID_LOG_LEVEL" default:"info" help:"Log level: debug, info, warn, error."`
	Format string `toml:"format" name:"log-format" env:"PUSHGRID_LOG_FORMAT" default:"text" help:"Log format: text, json."`
}

// frameEnvelope bounds what a chat frame adds to the client's msg: type,
// channel and user (each at most 128 bytes) and the punctuation.
const frameEnvelope = 1024

// DefaultConfig is the configuration with every key at its default: what
// pushgrid serve runs with no flag, environment variable or file. A Go
// program starts from it and changes what it needs. (A zero Config is not
// one: zero is a value of its own for some keys, such as an empty
// admin.listen, which turns the admin API off.)
func DefaultConfig() Config {
	var c Config
	schema.Defaults(&c)
	return c
}

// Effective is c as a node runs it: the node name, when there is none,
// from the host name, and what one part takes from another.
func (c Config) Effective() Config {
	c.derive()
	return c
}

// derive sets what is not a key of its own: the node name, when there is
// none, from the host name; what one part takes from another.
func (c *Config) derive() {
	if c.Node == "" {
		c.Node = hostNodeName()
	}
	if c.NATS.ClusterListen == "" && len(c.NATS.Seeds) > 0 {
		c.NATS.ClusterListen = broker.DefaultClusterListen
	}
	c.NATS.Node, c.Session.Node, c.SocketIO.Node = c.Node, c.Node, c.Node
	if c.History.Dir == "" {
		c.History.Dir = history.DefaultDir(c.Node)
	}
	if c.NATS.URL == "" {
		c.NATS.StoreDir = c.History.Dir
	}
	c.Session.Rules = c.Channels
	c.Session.Leeway = c.Auth.Leeway
	// The largest payload the node publishes: a client frame whole (a
	// custom frame), or a chat's msg in its envelope.
	c.NATS.MaxPayload = c.Session.MaxMessageBytes + frameEnvelope
	// Empty lists, not nil, so the printed configuration shows every key.
	for _, l := range []*[]string{&c.Gateway.TrustedProxies, &c.Gateway.Origins, &c.NATS.Seeds} {
		if *l == nil {
			*l = []string{}
		}
	}
}

// Check reports every setting that cannot work, each once, naming its
// key as the configuration file spells it. It checks c as it is, as the
// command line gives it (every key set): a key left zero fails where zero
// is out of range. New fills the defaults first. (Check, not Validate:
// kong would call that while parsing, before the node name is known.)
func (c Config) Check() error {
	c.derive()
	var errs []error
	if !session.ValidNode(c.Node) {
		errs = append(errs, fmt.Errorf("node: %q is not a valid node name (A-Z a-z 0-9 _ -, 1 to 64 bytes)", c.Node))
		// The parts check the name too: say it once.
		c.NATS.Node, c.Session.Node = "n", "n"
	}
	if err := checkPIDFile(c.PIDFile); err != nil {
		errs = append(errs, err)
	}
	for _, part := range []interface{ Check() error }{&c.Gateway, &c.NATS, &c.Session, &c.Auth, &c.SocketIO, &c.History, c.Admin, c.Log} {
		if err := part.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkPIDFile checks that pid_file can be a file: its directory exists
// and it is not a directory itself.
func checkPIDFile(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("pid_file: %q is a directory; want a file's path", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("pid_file: the directory %q does not exist", dir)
	}
	return nil
}

// Check checks the [admin] table.
func (c AdminConfig) Check() error {
	// The messages never repeat the token: they end up in logs.
	if n := len(c.Token); n > 0 && (n < minAdminToken || n > maxAdminToken) {
		return fmt.Errorf("admin.token: %d bytes; want %d to %d printable ASCII bytes (a random one, such as openssl rand -hex 32 prints)", n, minAdminToken, maxAdminToken)
	}
	for i := 0; i < len(c.Token); i++ {
		if c.Token[i] <= ' ' || c.Token[i] >= 0x7f {
			return fmt.Errorf("admin.token: byte %d is a space, a control character or not ASCII; want printable ASCII", i+1)
		}
	}
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	if c.Token == "" && !loopback.Only(c.Listen) {
		return fmt.Errorf("admin.listen %q is reachable beyond loopback: set admin.token (PUSHGRID_ADMIN_TOKEN), or listen on 127.0.0.1", c.Listen)
	}
	return nil
}

// Check checks the [log] table.
func (c LogConfig) Check() error {
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Level)
	}
	if c.Format != "text" && c.Format != "json" {
		return fmt.Errorf("log.format: %q is not text or json", c.Format)
	}
	return nil
}

// Logger is a logger writing to w as the [log] table says, every line
// tagged with the node's name.
func (c Config) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)).With("node", c.Node)
	}
	return slog.New(slog.NewTextHandler(w, opts)).With("node", c.Node)
}

// hostNodeName is the host name's first label made into a valid node name.
func hostNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "pushgrid"
	}
	host, _, _ = strings.Cut(host, ".")
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

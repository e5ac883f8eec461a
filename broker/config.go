package broker

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/pushgrid/pushgrid/internal/schema"
)

const (
	// DefaultClusterListen is where routes listen when seeds are given but
	// no cluster_listen.
	DefaultClusterListen = ":6222"
	// missedBeats is how many heartbeats a node may miss before the others
	// consider it gone.
	missedBeats = 3
	// MinHeartbeat and MaxHeartbeat bound Config.Heartbeat: faster beats
	// cost every node a message per node for nothing, and with slower ones
	// a dead node lingers in the views for minutes.
	MinHeartbeat = 50 * time.Millisecond
	MaxHeartbeat = time.Minute
)

// Config is the broker's configuration: the [nats] table. Each field's tags
// declare its key once: the TOML key, the flag and environment variable of
// pushgrid serve, the default and the help text. The zero value is usable:
// New fills every zero field with its default.
type Config struct {
	Listen string `toml:"listen" name:"nats-listen" env:"PUSHGRID_NATS_LISTEN" default:"127.0.0.1:4222" help:"The embedded NATS server's client address, for backends (any NATS client)."`
	// ClusterListen is the route address other nodes connect to. Routes are
	// off unless it or Seeds is set; with seeds alone it is ":6222".
	ClusterListen string `toml:"cluster_listen" name:"cluster-listen" env:"PUSHGRID_CLUSTER_LISTEN" help:"Route address for other nodes; off unless set or seeds are given, then :6222."`
	// Seeds are peers' route URLs, such as nats://10.0.0.2:6222. A seed that
	// is down, or is this node itself, is not an error: routes retry.
	Seeds       []string `toml:"seeds" name:"seed" env:"PUSHGRID_SEEDS" help:"A peer's route URL such as nats://10.0.0.2:6222; give several. A seed that is down, or is this node, is fine: routes retry."`
	ClusterName string   `toml:"cluster_name" name:"cluster-name" env:"PUSHGRID_CLUSTER_NAME" default:"pushgrid" help:"Cluster name, the same on every node."`
	// URL, when set, connects to an existing NATS deployment instead of
	// embedding a server; Listen, ClusterListen and Seeds are then unused.
	URL    string `toml:"url" name:"nats-url" env:"PUSHGRID_NATS_URL" help:"Join an existing NATS deployment (nats://host:4222) instead of embedding a server; listen, cluster_listen and seeds are then unused."`
	Prefix string `toml:"prefix" name:"prefix" env:"PUSHGRID_PREFIX" default:"push" help:"First token of every subject: push.chan.<channel>, push.user.<user>, ..."`
	// Heartbeat is how often the node publishes on <prefix>.node.<node>; a
	// node that misses three is gone from the others' view. It must lie
	// between MinHeartbeat and MaxHeartbeat.
	Heartbeat time.Duration `toml:"heartbeat" name:"heartbeat" env:"PUSHGRID_HEARTBEAT" default:"1s" help:"Node heartbeat on <prefix>.node.<node>; a node missing three is gone (50ms to 1m)."`

	// MaxPayload is the largest payload this node itself publishes (a
	// client's custom frame whole, a chat frame with its envelope); 0 means
	// the NATS default of 1 MiB. The embedded server's max_payload is raised
	// to it when needed, never lowered below the NATS default; an external
	// server (URL) whose max_payload is smaller fails Start. It is derived
	// from session.max_message_bytes, so errors name that key.
	MaxPayload int `toml:"-" kong:"-"`

	// Node is this node's name (required).
	Node string `toml:"-" kong:"-"`
	// Status, when set, adds this node's gateway address and counts to
	// every heartbeat.
	Status func() Status `toml:"-" kong:"-"`
	// Logger receives the broker's and the NATS server's log lines.
	Logger *slog.Logger `toml:"-" kong:"-"`
}

// Status is what a node tells the cluster about itself besides its name.
type Status struct {
	Gateway     string `json:"gateway,omitempty"`
	Connections int    `json:"connections"`
	Channels    int    `json:"channels"`
}

func (c *Config) setDefaults() {
	schema.Defaults(c)
	if c.ClusterListen == "" && len(c.Seeds) > 0 {
		c.ClusterListen = DefaultClusterListen
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Check reports the first setting that cannot work, naming its key as
// the configuration file spells it (the broker's keys live under nats.).
func (c *Config) Check() error {
	if c.Node == "" {
		return fmt.Errorf("node: a node name is required")
	}
	if !validToken(c.Node) {
		// Subjects carry the name as one token (<prefix>.node.<node>).
		return fmt.Errorf("node: %q must be one subject token (no dots, spaces or wildcards)", c.Node)
	}
	if c.URL != "" {
		// nats.go takes a comma list of servers.
		for _, one := range strings.Split(c.URL, ",") {
			if u, err := url.Parse(strings.TrimSpace(one)); err != nil || u.Host == "" {
				return fmt.Errorf("nats.url: %q is not a NATS URL like nats://10.0.0.2:4222", one)
			}
		}
	} else {
		if _, _, err := splitHostPort(c.Listen); err != nil {
			return fmt.Errorf("nats.listen: %w", err)
		}
		if c.ClusterListen != "" {
			if _, _, err := splitHostPort(c.ClusterListen); err != nil {
				return fmt.Errorf("nats.cluster_listen: %w", err)
			}
		}
	}
	for _, s := range c.Seeds {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("nats.seeds: %q is not a route URL like nats://10.0.0.2:6222", s)
		}
	}
	if c.ClusterName == "" || len(c.ClusterName) > 128 || strings.IndexFunc(c.ClusterName, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("nats.cluster_name: %q must be 1 to 128 bytes without spaces", c.ClusterName)
	}
	if !validToken(c.Prefix) {
		return fmt.Errorf("nats.prefix: %q must be one subject token", c.Prefix)
	}
	if c.Heartbeat < MinHeartbeat || c.Heartbeat > MaxHeartbeat {
		return fmt.Errorf("nats.heartbeat: %v is outside %v..%v", c.Heartbeat, MinHeartbeat, MaxHeartbeat)
	}
	if c.MaxPayload < 0 || c.MaxPayload > maxPayloadLimit {
		return fmt.Errorf("session.max_message_bytes: the largest NATS payload it makes, %d bytes, is outside 0..%d", c.MaxPayload, maxPayloadLimit)
	}
	return nil
}

// maxPayloadLimit is the largest Config.MaxPayload: the NATS server's
// default max_pending, which a max_payload may not exceed.
const maxPayloadLimit = server.MAX_PENDING_SIZE

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '.' || c == '*' || c == '>' || c >= 0x7f {
			return false
		}
	}
	return true
}

// splitHostPort parses "host:port" for the NATS server, where port 0 asks
// for any free port (the NATS server spells that -1).
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

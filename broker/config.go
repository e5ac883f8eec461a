package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/pushgrid/pushgrid/internal/loopback"
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
	// Token locks the client port (access.go); with URL it is what this
	// node presents to the external server.
	Token string `toml:"token" secret:"" name:"nats-token" env:"PUSHGRID_NATS_TOKEN" help:"Token every client of the NATS client port must present (nats://TOKEN@host:4222, or its client's token option); required when listen is beyond loopback. 16 to 256 printable ASCII bytes, no spaces; prefer the environment variable to the flag, which other users of the host can read. With url: the token this node presents."`
	// ClusterListen is the route address other nodes connect to. Routes are
	// off unless it or Seeds is set; with seeds alone it is ":6222".
	ClusterListen string `toml:"cluster_listen" name:"cluster-listen" env:"PUSHGRID_CLUSTER_LISTEN" help:"Route address for other nodes; off unless set or seeds are given, then :6222."`
	// Seeds are peers' route URLs, such as nats://10.0.0.2:6222. A seed that
	// is down, or is this node itself, is not an error: routes retry.
	Seeds       []string `toml:"seeds" name:"seed" env:"PUSHGRID_SEEDS" help:"A peer's route URL such as nats://10.0.0.2:6222; give several. A seed that is down, or is this node, is fine: routes retry."`
	ClusterName string   `toml:"cluster_name" name:"cluster-name" env:"PUSHGRID_CLUSTER_NAME" default:"pushgrid" help:"Cluster name, the same on every node."`
	// ClusterSecret is what every node presents on its routes; a node
	// accepts only a route that presents its own (access.go).
	ClusterSecret string `toml:"cluster_secret" secret:"" name:"cluster-secret" env:"PUSHGRID_CLUSTER_SECRET" help:"Secret every node presents on its routes, the same on every node: a route with another, or none, is refused. Required when routes listen beyond loopback (cluster_listen, or :6222 with seeds). 16 to 256 printable ASCII bytes, no spaces; prefer the environment variable to the flag, which other users of the host can read."`
	// URL, when set, connects to an existing NATS deployment instead of
	// embedding a server; Listen, ClusterListen, Seeds and ClusterSecret
	// are then unused.
	URL    string `toml:"url" name:"nats-url" env:"PUSHGRID_NATS_URL" help:"Join an existing NATS deployment (nats://host:4222) instead of embedding a server; listen, cluster_listen, seeds and cluster_secret are then unused."`
	Prefix string `toml:"prefix" name:"prefix" env:"PUSHGRID_PREFIX" default:"push" help:"First token of every subject: push.chan.<channel>, push.user.<user>, ..."`
	// Heartbeat is how often the node publishes on <prefix>.node.<node>; a
	// node that misses three is gone from the others' view. It must lie
	// between MinHeartbeat and MaxHeartbeat.
	Heartbeat time.Duration `toml:"heartbeat" name:"heartbeat" env:"PUSHGRID_HEARTBEAT" default:"1s" help:"Node heartbeat on <prefix>.node.<node>; a node missing three is gone (50ms to 1m)."`
	// TLSCert and TLSKey put TLS on the client port and the routes; TLSCA
	// is what routes verify their peers against, both ways. With URL they
	// are this node's client certificate and the CAs it trusts.
	TLSCert string `toml:"tls_cert" name:"nats-tls-cert" env:"PUSHGRID_NATS_TLS_CERT" help:"PEM certificate file (with tls_key): TLS on the NATS client port and on the routes; it must name every address clients and peers dial. With url: this node's client certificate."`
	TLSKey  string `toml:"tls_key" name:"nats-tls-key" env:"PUSHGRID_NATS_TLS_KEY" help:"PEM private key file of tls_cert."`
	TLSCA   string `toml:"tls_ca" name:"nats-tls-ca" env:"PUSHGRID_NATS_TLS_CA" help:"PEM CA certificates file: routes present tls_cert and accept only peers whose certificates it signed; required with tls_cert when routes are on. With url: the CAs this node trusts for the server."`

	// MaxPayload is the largest payload this node itself publishes (a
	// client's custom frame whole, a chat frame with its envelope); 0 means
	// the NATS default of 1 MiB. The embedded server's max_payload is raised
	// to it when needed, never lowered below the NATS default; an external
	// server (URL) whose max_payload is smaller fails Start. It is derived
	// from session.max_message_bytes, so errors name that key.
	MaxPayload int `toml:"-" kong:"-"`

	// StoreDir is the embedded server's JetStream store directory (the
	// history channels' messages and the cluster's stream metadata):
	// history.dir. Empty: JetStream stays off.
	StoreDir string `toml:"-" kong:"-"`
	// Stored reports whether a channel keeps history (PROTOCOL.md §6): the
	// node subscribes such a channel's stored messages, republished on
	// <prefix>.live.chan.<channel> with their sequence, instead of
	// <prefix>.chan.<channel>. Nil: none does.
	Stored func(channel string) bool `toml:"-" kong:"-"`

	// Takeover is how long Start waits for the embedded server's ports
	// and store to be let go of by the previous process of this node, in
	// an in-place restart (takeover.go). 0: they must be free at once.
	Takeover time.Duration `toml:"-" kong:"-"`

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
	// Received and Delivered count client frames in and frames out since
	// the node started; Version is the node's build.
	Received  uint64 `json:"received,omitempty"`
	Delivered uint64 `json:"delivered,omitempty"`
	Version   string `json:"version,omitempty"`
	// Routes is how many peer nodes the node's embedded NATS server has a
	// route to (-1 with an external NATS, nats.url): in a partition each
	// side's nodes say they reach only their own side.
	Routes int `json:"routes"`
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
		if u.User != nil {
			// Every route presents the cluster secret; a second credential
			// in a seed would only disagree with it (and print in logs).
			return fmt.Errorf("nats.seeds: %q carries a user or password; routes present nats.cluster_secret instead", u.Redacted())
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
	if err := checkSecret(c.Token); err != nil {
		return fmt.Errorf("nats.token: %w", err)
	}
	if err := checkSecret(c.ClusterSecret); err != nil {
		return fmt.Errorf("nats.cluster_secret: %w", err)
	}
	if err := c.checkTLS(); err != nil {
		return err
	}
	if c.URL != "" {
		return nil
	}
	// Last, so that a malformed key is named for what it is.
	if !loopback.Only(c.Listen) && c.Token == "" {
		return fmt.Errorf("nats.token: nats.listen %q is beyond loopback, where any host could publish to every client: "+
			"set nats.token (backends then present it), or listen on 127.0.0.1", c.Listen)
	}
	if c.ClusterListen != "" && !loopback.Only(c.ClusterListen) && c.ClusterSecret == "" {
		return fmt.Errorf("nats.cluster_secret: routes listen beyond loopback (nats.cluster_listen %q; with seeds it defaults to %q), "+
			"where any host could join the cluster: set nats.cluster_secret, the same on every node", c.ClusterListen, DefaultClusterListen)
	}
	return nil
}

// Bounds of Config.Token and Config.ClusterSecret: shorter is guessable,
// and both travel in a NATS CONNECT line, whose length NATS bounds.
const (
	minSecret = 16
	maxSecret = 256
)

// checkSecret checks a token or cluster secret without repeating it: an
// error message ends up in logs.
func checkSecret(s string) error {
	if s == "" {
		return nil
	}
	if len(s) < minSecret || len(s) > maxSecret {
		return fmt.Errorf("%d bytes; want %d to %d printable ASCII bytes", len(s), minSecret, maxSecret)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("byte %d is a space, a control character or not ASCII; want printable ASCII", i+1)
		}
	}
	return nil
}

// checkTLS checks the TLS files by reading them, so that a node refuses a
// bad one before it starts.
func (c *Config) checkTLS() error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return errors.New("nats.tls_key: not set, but nats.tls_cert is")
	case c.TLSKey != "" && c.TLSCert == "":
		return errors.New("nats.tls_cert: not set, but nats.tls_key is")
	}
	if c.TLSCert != "" {
		cert, err := os.ReadFile(c.TLSCert)
		if err != nil {
			return fmt.Errorf("nats.tls_cert: %w", err)
		}
		key, err := os.ReadFile(c.TLSKey)
		if err != nil {
			return fmt.Errorf("nats.tls_key: %w", err)
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			return fmt.Errorf("nats.tls_cert: %s with nats.tls_key %s: %w", c.TLSCert, c.TLSKey, err)
		}
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return fmt.Errorf("nats.tls_ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("nats.tls_ca: %s holds no PEM certificate", c.TLSCA)
		}
		if c.URL == "" && c.TLSCert == "" {
			return errors.New("nats.tls_ca: needs nats.tls_cert and nats.tls_key: routes verify their peers with it over TLS")
		}
	}
	if c.URL == "" && c.TLSCert != "" && c.ClusterListen != "" && c.TLSCA == "" {
		// Without it routes would trust whatever the system trusts, and
		// any certificate from a public CA could join the cluster.
		return errors.New("nats.tls_ca: routes with TLS need the CA that signed every node's nats.tls_cert: peers are verified both ways")
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

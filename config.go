package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/alecthomas/kong"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

// Settings is every configuration key, as a flag of serve. The toml tag is
// the key in the configuration file; each package's Config gets its part in
// configs. Precedence: flag > environment > file > default.
type Settings struct {
	Node string `toml:"node" env:"PUSHGRID_NODE" help:"Node name, unique in the cluster (default: the host name)."`

	Listen           string        `toml:"gateway.listen" env:"PUSHGRID_LISTEN" default:"${gateway_listen}" help:"WebSocket and HTTP address."`
	Workers          int           `toml:"gateway.workers" env:"PUSHGRID_WORKERS" default:"0" help:"SO_REUSEPORT worker listeners (0: one per CPU)."`
	Sticky           string        `toml:"gateway.sticky" env:"PUSHGRID_STICKY" default:"ip" enum:"ip,none" help:"Steer each client IP to one worker (ip) or not (none)."`
	TrustedProxies   []string      `toml:"gateway.trusted_proxies" env:"PUSHGRID_TRUSTED_PROXIES" name:"trusted-proxy" help:"CIDR or address whose X-Forwarded-For is believed (repeatable)."`
	Origins          []string      `toml:"gateway.origins" env:"PUSHGRID_ORIGINS" name:"origin" help:"A browser origin besides the gateway's own host that may connect, such as https://app.example.com or https://*.example.com; * for any (repeatable)."`
	Drain            time.Duration `toml:"gateway.drain" env:"PUSHGRID_DRAIN" default:"${gateway_drain}" help:"How long clients are still served after a shutdown signal before they are closed with 1001."`
	WriteTimeout     time.Duration `toml:"gateway.write_timeout" env:"PUSHGRID_WRITE_TIMEOUT" default:"${gateway_write_timeout}" help:"Longest blocking write to one client, and longest response to a plain HTTP request."`
	HandshakeTimeout time.Duration `toml:"gateway.handshake_timeout" env:"PUSHGRID_HANDSHAKE_TIMEOUT" default:"${gateway_handshake_timeout}" help:"A request head must arrive within it, and a request body within it again."`
	IdleTimeout      time.Duration `toml:"gateway.idle_timeout" env:"PUSHGRID_IDLE_TIMEOUT" default:"${gateway_idle_timeout}" help:"An idle keep-alive HTTP connection is closed after it."`
	FrameTimeout     time.Duration `toml:"gateway.frame_timeout" env:"PUSHGRID_FRAME_TIMEOUT" default:"${gateway_frame_timeout}" help:"A client frame (or fragmented message) that has started must end within it, else close 1008."`
	MaxConnections   int           `toml:"gateway.max_connections" env:"PUSHGRID_MAX_CONNECTIONS" default:"0" help:"Client connections at once; more are answered 503 (0: the open-file limit less a reserve)."`
	Auth             string        `toml:"gateway.auth" env:"PUSHGRID_AUTH" default:"none" enum:"none" help:"How users are identified before the upgrade (none: the user query parameter)."`

	NATSListen    string        `toml:"nats.listen" env:"PUSHGRID_NATS_LISTEN" name:"nats-listen" default:"${nats_listen}" help:"Embedded NATS client address, for backends."`
	ClusterListen string        `toml:"nats.cluster_listen" env:"PUSHGRID_CLUSTER_LISTEN" help:"Route address for other nodes (off unless set or --seed is given; then :6222)."`
	Seeds         []string      `toml:"nats.seeds" env:"PUSHGRID_SEEDS" name:"seed" help:"A peer's route URL such as nats://10.0.0.2:6222 (repeatable)."`
	ClusterName   string        `toml:"nats.cluster_name" env:"PUSHGRID_CLUSTER_NAME" default:"${nats_cluster_name}" help:"Cluster name, the same on every node."`
	NATSURL       string        `toml:"nats.url" env:"PUSHGRID_NATS_URL" name:"nats-url" help:"Use an existing NATS deployment instead of embedding a server."`
	Prefix        string        `toml:"nats.prefix" env:"PUSHGRID_PREFIX" default:"${nats_prefix}" help:"First token of every subject."`
	Heartbeat     time.Duration `toml:"nats.heartbeat" env:"PUSHGRID_HEARTBEAT" default:"${nats_heartbeat}" help:"Node heartbeat period; three missed beats and a node is gone."`

	MaxMessageBytes int           `toml:"session.max_message_bytes" env:"PUSHGRID_MAX_MESSAGE_BYTES" default:"${session_max_message_bytes}" help:"Largest client frame; larger ones close with 1009."`
	MaxChannels     int           `toml:"session.max_channels" env:"PUSHGRID_MAX_CHANNELS" default:"${session_max_channels}" help:"Channels one connection may join."`
	Rate            float64       `toml:"session.rate" env:"PUSHGRID_RATE" default:"${session_rate}" help:"Client frames per second per connection (token bucket)."`
	Burst           int           `toml:"session.burst" env:"PUSHGRID_BURST" default:"${session_burst}" help:"Token bucket burst."`
	QueueFrames     int           `toml:"session.queue_frames" env:"PUSHGRID_QUEUE_FRAMES" default:"${session_queue_frames}" help:"Outgoing queue bound in frames; past it the client is closed with 4001."`
	QueueBytes      int           `toml:"session.queue_bytes" env:"PUSHGRID_QUEUE_BYTES" default:"${session_queue_bytes}" help:"Outgoing queue bound in bytes; past it the client is closed with 4001."`
	RequestTimeout  time.Duration `toml:"session.request_timeout" env:"PUSHGRID_REQUEST_TIMEOUT" default:"${session_request_timeout}" help:"How long a custom frame with an id waits for a backend's reply."`
	MaxRequests     int           `toml:"session.max_requests" env:"PUSHGRID_MAX_REQUESTS" default:"${session_max_requests}" help:"Custom frames with an id one connection may have waiting for a reply; more get too_many_requests."`
	PresenceLimit   int           `toml:"session.presence_limit" env:"PUSHGRID_PRESENCE_LIMIT" default:"0" help:"Stop join/leave control frames in channels with more members than this on a node (0: never, as PROTOCOL.md says)."`
	PrivatePrefix   string        `toml:"session.private_prefix" env:"PUSHGRID_PRIVATE_PREFIX" default:"${session_private_prefix}" help:"Channels starting with it (@alice, @alice.inbox) are joinable only by that user; none turns it off."`

	AdminListen string `toml:"admin.listen" env:"PUSHGRID_ADMIN_LISTEN" default:"${admin_listen}" help:"Admin API and pprof address (empty: off)."`
	LogLevel    string `toml:"log.level" env:"PUSHGRID_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level."`
	LogFormat   string `toml:"log.format" env:"PUSHGRID_LOG_FORMAT" default:"text" enum:"text,json" help:"Log format."`
}

const defaultAdminListen = "127.0.0.1:6003"

// frameEnvelope bounds what a chat frame adds to the client's msg: type,
// channel and user (each at most 128 bytes) and the punctuation.
const frameEnvelope = 1024

// defaultVars feeds the packages' default constants into the flag
// defaults, so each default is written once.
func defaultVars() kong.Vars {
	return kong.Vars{
		"gateway_listen":            gateway.DefaultListen,
		"gateway_drain":             gateway.DefaultDrain.String(),
		"gateway_write_timeout":     gateway.DefaultWriteTimeout.String(),
		"gateway_handshake_timeout": gateway.DefaultHandshakeTimeout.String(),
		"gateway_idle_timeout":      gateway.DefaultIdleTimeout.String(),
		"gateway_frame_timeout":     gateway.DefaultFrameTimeout.String(),
		"nats_listen":               broker.DefaultListen,
		"nats_cluster_name":         broker.DefaultClusterName,
		"nats_prefix":               broker.DefaultPrefix,
		"nats_heartbeat":            broker.DefaultHeartbeat.String(),
		"session_max_message_bytes": strconv.Itoa(session.DefaultMaxMessageBytes),
		"session_max_channels":      strconv.Itoa(session.DefaultMaxChannels),
		"session_rate":              strconv.Itoa(session.DefaultRate),
		"session_burst":             strconv.Itoa(session.DefaultBurst),
		"session_queue_frames":      strconv.Itoa(session.DefaultQueueFrames),
		"session_queue_bytes":       strconv.Itoa(session.DefaultQueueBytes),
		"session_request_timeout":   session.DefaultRequestTimeout.String(),
		"session_max_requests":      strconv.Itoa(session.DefaultMaxRequests),
		"session_private_prefix":    session.DefaultPrivatePrefix,
		"admin_listen":              defaultAdminListen,
	}
}

// Configs is the effective configuration, split into each package's own.
// Its TOML form is what `config check` prints.
type Configs struct {
	Node    string         `toml:"node"`
	Gateway gateway.Config `toml:"gateway"`
	NATS    broker.Config  `toml:"nats"`
	Session session.Config `toml:"session"`
	Admin   struct {
		Listen string `toml:"listen"`
	} `toml:"admin"`
	Log struct {
		Level  string `toml:"level"`
		Format string `toml:"format"`
	} `toml:"log"`
}

// configs splits s into each package's Config and checks them all.
func (s *Settings) configs() (Configs, error) {
	var c Configs
	// Empty lists, not nil, so the printed configuration shows every key.
	if s.TrustedProxies == nil {
		s.TrustedProxies = []string{}
	}
	if s.Seeds == nil {
		s.Seeds = []string{}
	}
	if s.Origins == nil {
		s.Origins = []string{}
	}
	c.Node = s.Node
	if c.Node == "" {
		c.Node = defaultNodeName()
	}
	c.Gateway = gateway.Config{
		Listen: s.Listen, Workers: s.Workers, Sticky: s.Sticky, TrustedProxies: s.TrustedProxies, Origins: s.Origins,
		Drain: s.Drain, WriteTimeout: s.WriteTimeout, HandshakeTimeout: s.HandshakeTimeout, IdleTimeout: s.IdleTimeout,
		FrameTimeout: s.FrameTimeout, MaxConnections: s.MaxConnections, Auth: s.Auth,
	}
	c.NATS = broker.Config{
		Listen: s.NATSListen, ClusterListen: s.ClusterListen, Seeds: s.Seeds, ClusterName: s.ClusterName,
		URL: s.NATSURL, Prefix: s.Prefix, Heartbeat: s.Heartbeat, Node: c.Node,
		// The largest payload the node publishes: a client frame whole (a
		// custom frame), or a chat's msg in its envelope.
		MaxPayload: s.MaxMessageBytes + frameEnvelope,
	}
	if c.NATS.ClusterListen == "" && len(c.NATS.Seeds) > 0 {
		c.NATS.ClusterListen = broker.DefaultClusterListen
	}
	c.Session = session.Config{
		MaxMessageBytes: s.MaxMessageBytes, MaxChannels: s.MaxChannels, Rate: s.Rate, Burst: s.Burst,
		QueueFrames: s.QueueFrames, QueueBytes: s.QueueBytes, RequestTimeout: s.RequestTimeout, MaxRequests: s.MaxRequests,
		PrivatePrefix: s.PrivatePrefix, PresenceLimit: s.PresenceLimit, Node: c.Node,
	}
	c.Admin.Listen = s.AdminListen
	c.Log.Level, c.Log.Format = s.LogLevel, s.LogFormat

	var errs []error
	if !session.ValidNode(c.Node) {
		errs = append(errs, fmt.Errorf("node: %q is not a valid node name (A-Z a-z 0-9 _ -, 1 to 64 bytes)", c.Node))
	}
	if c.Gateway.Workers < 0 {
		errs = append(errs, fmt.Errorf("gateway.workers: %d is negative", c.Gateway.Workers))
	}
	for _, v := range []interface{ Validate() error }{&c.NATS, &c.Session} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	gw := c.Gateway
	if gw.Workers == 0 {
		gw.Workers = 1 // 0 means one per CPU; validate the rest as is
	}
	if err := gw.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// defaultNodeName is the host name's first label made into a valid node name.
func defaultNodeName() string {
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

// logger builds the process logger from the log settings.
func (c *Configs) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)).With("node", c.Node)
	}
	return slog.New(slog.NewTextHandler(w, opts)).With("node", c.Node)
}

// settingKeys maps each configuration key to its field's type, from the
// toml tags of Settings.
var settingKeys = func() map[string]reflect.Type {
	m := make(map[string]reflect.Type)
	t := reflect.TypeFor[Settings]()
	for i := 0; i < t.NumField(); i++ {
		if key := t.Field(i).Tag.Get("toml"); key != "" {
			m[key] = t.Field(i).Type
		}
	}
	return m
}()

// fileResolver gives kong the values of a TOML configuration file, keyed by
// each flag's toml tag.
type fileResolver struct{ values map[string]any }

// loadTOML is kong's configuration loader: it reads the whole file, and
// refuses it, naming every offending key, if any key is unknown or of the
// wrong type.
func loadTOML(r io.Reader) (kong.Resolver, error) {
	var raw map[string]any
	if _, err := toml.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse TOML: %w", err)
	}
	values := make(map[string]any)
	flatten("", raw, values)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		typ, ok := settingKeys[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key", k))
			continue
		}
		v, err := convert(values[k], typ)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		values[k] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &fileResolver{values: values}, nil
}

// flatten turns nested tables into dotted keys; arrays are values.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(key, sub, out)
			continue
		}
		out[key] = v
	}
}

// convert checks a TOML value against a setting's type and returns it in a
// form kong's mappers take.
func convert(v any, typ reflect.Type) (any, error) {
	if typ == reflect.TypeFor[time.Duration]() {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration string such as \"5s\", got %v", v)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("want a duration such as \"5s\": %v", err)
		}
		return s, nil
	}
	switch typ.Kind() {
	case reflect.String:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("want a string, got %v", v)
	case reflect.Int:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return nil, fmt.Errorf("want an integer, got %v", v)
	case reflect.Float64:
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		}
		return nil, fmt.Errorf("want a number, got %v", v)
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array of strings, got %v", v)
		}
		out := make([]any, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want an array of strings, element %d is %v", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported setting type %s", typ)
}

func (r *fileResolver) Validate(*kong.Application) error { return nil }

// Resolve yields the file's value for a flag, unless the flag's environment
// variable is set: kong asks resolvers after reading the environment, and
// our precedence puts the environment above the file.
func (r *fileResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	for _, name := range flag.Envs {
		if _, set := os.LookupEnv(name); set {
			return nil, nil
		}
	}
	key := flag.Tag.Get("toml")
	if key == "" {
		return nil, nil
	}
	return r.values[key], nil
}

// ConfigCmd groups configuration commands.
type ConfigCmd struct {
	Check ConfigCheckCmd `cmd:"" help:"Check a configuration file and print the effective configuration (file, then environment, applied over the defaults)."`
}

// ConfigCheckCmd loads a file as serve would and prints the result.
type ConfigCheckCmd struct {
	File string `arg:"" type:"existingfile" help:"TOML configuration file."`
}

func (c *ConfigCheckCmd) Run(e *env) error {
	cfgs, err := loadSettings([]string{"serve", "--config", c.File})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(e.stderr, "%s: %s\n", c.File, line)
		}
		return exitError{1}
	}
	fmt.Fprintf(e.stdout, "# effective configuration of %s\n", c.File)
	return encodeTOML(e.stdout, cfgs)
}

func encodeTOML(w io.Writer, cfgs Configs) error {
	return toml.NewEncoder(w).Encode(cfgs)
}

// loadSettings parses a serve command line (with the environment and any
// --config file) into the effective configuration.
func loadSettings(args []string) (Configs, error) {
	var cli CLI
	parser, err := newParser(&cli, io.Discard, io.Discard)
	if err != nil {
		return Configs{}, err
	}
	if _, err := parser.Parse(args); err != nil {
		return Configs{}, err
	}
	return cli.Serve.Settings.configs()
}

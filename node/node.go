package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgrid/pushgrid/api"
	"github.com/pushgrid/pushgrid/auth"
	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/history"
	"github.com/pushgrid/pushgrid/internal/loopback"
	"github.com/pushgrid/pushgrid/session"
	"github.com/pushgrid/pushgrid/socketio"
)

// Node is one pushgrid node.
type Node struct {
	cfg     Config
	version string
	log     *slog.Logger
	broker  *broker.Broker
	hub     *session.Hub
	gateway *gateway.Gateway
	sio     *socketio.Server
	store   *history.Store // history channels; nil when no rule keeps history
	api     *api.Server    // the server API, once started
	admin   *http.Server   // nil when admin.listen is empty
	anyUser bool           // no auth: a client names its own user

	listen   ListenFunc // nil: net.Listen
	takeover *takeover  // nil unless the node takes over from a previous process

	mu       sync.Mutex
	started  bool // guarded by mu
	adminLn  net.Listener
	adminRun sync.WaitGroup

	// streams runs keepStreams and runRoster until stopStreams closes.
	streams     sync.WaitGroup
	stopStreams chan struct{}
	stopOnce    sync.Once
	rosters     rosters     // the other nodes' (roster.go)
	wantFull    atomic.Bool // another node asked for this node's whole roster
	handingOver atomic.Bool // Handover: the roster's last word is its last changes, not an empty roster

	apiRequests *prometheus.CounterVec
	storedMu    sync.Mutex
	stored      float64 // guarded by storedMu; pushgrid_history_stored_total as last read

	shutOnce sync.Once
	shutErr  error
}

// Option adds to a node what a configuration file cannot say.
type Option func(*options)

type options struct {
	version   string
	handler   session.Handler
	logger    *slog.Logger
	authorize func(*http.Request, netip.Addr) (session.Identity, error)
	listen    ListenFunc
	takeover  *takeover
}

// ListenFunc gives a node its listening sockets: the n sockets named name
// (what they are for and the configured address, e.g. "gateway
// 0.0.0.0:8080"), which it takes over from a previous process of the node
// or, when there are none, gets from open.
type ListenFunc func(name string, n int, open func() ([]net.Listener, error)) ([]net.Listener, error)

// WithListeners lets f give the node its listening sockets, the gateway's
// and the admin API's: an in-place restart (pushgrid serve on SIGHUP)
// hands them from one process to the next, so that no connection is
// refused in between.
func WithListeners(f ListenFunc) Option { return func(o *options) { o.listen = f } }

type takeover struct {
	wait  time.Duration
	ready func() error
}

// WithTakeover makes the node the next process of a running one, in an
// in-place restart: Start takes its listening sockets first (see
// WithListeners), then calls ready, on which the previous process lets go
// of the NATS ports and the history store (Handover), then starts the
// broker, waiting up to wait for them. Clients that connect meanwhile wait
// in the kernel's accept queue.
func WithTakeover(wait time.Duration, ready func() error) Option {
	return func(o *options) { o.takeover = &takeover{wait: wait, ready: ready} }
}

// WithHandler adds behaviour to every client connection of the node
// (session.Handler: OnConnect, OnMessage, OnDisconnect).
func WithHandler(h session.Handler) Option { return func(o *options) { o.handler = h } }

// WithVersion names the node's build, which the cluster view and the
// admin page show.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithLogger sends the node's log lines to l instead of standard error in
// the form the [log] table says.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithAuthorize decides who a client is before its WebSocket upgrade, in
// place of the [auth] table: f returns the identity of a request from
// remote (the client address, after trusted proxies), or an error to
// refuse it (a *gateway.HTTPError says the status and message; any other
// is a 403). Its users are verified: neither the query nor a join can
// change them.
func WithAuthorize(f func(r *http.Request, remote netip.Addr) (session.Identity, error)) Option {
	return func(o *options) { o.authorize = f }
}

// New checks cfg and returns a node ready to Start; it starts nothing.
// Start cfg from DefaultConfig.
func New(cfg Config, opts ...Option) (*Node, error) {
	cfg = cfg.Effective()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log := o.logger
	if log == nil {
		log = cfg.Logger(os.Stderr)
	}
	n := &Node{cfg: cfg, log: log, stopStreams: make(chan struct{}),
		rosters: newRosters(), version: o.version}
	cfg.NATS.Logger = log.With("component", "broker")
	cfg.Session.Logger = log.With("component", "session")
	cfg.Gateway.Logger = log.With("component", "gateway")
	cfg.Auth.Logger = log.With("component", "auth")
	cfg.SocketIO.Logger = log.With("component", "socketio")
	cfg.NATS.Status = n.status
	if o.takeover != nil {
		cfg.NATS.Takeover = o.takeover.wait
		n.takeover = o.takeover
	}
	if o.listen != nil {
		name := "gateway " + cfg.Gateway.Listen
		cfg.Gateway.Listeners = func(count int, open func() ([]net.Listener, error)) ([]net.Listener, error) {
			return o.listen(name, count, open)
		}
		n.listen = o.listen
	}
	// The broker subscribes history channels to what their store
	// republishes; the store is made once the broker knows its prefix.
	cfg.NATS.Stored = func(channel string) bool { return n.store != nil && n.store.Keeps(channel) }

	n.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgrid_api_requests_total",
		Help: "Server API requests this node answered (push.api.<method>, POST /api/<method>), by method and result (ok, error).",
	}, []string{"method", "result"})
	cfg.Gateway.Metrics = append(cfg.Gateway.Metrics, n.apiRequests, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pushgrid_history_stored_total",
		Help: "Messages the cluster's history streams have stored since they were created (their last sequences, summed); 0 without history.",
	}, n.storedTotal))

	b, err := broker.New(cfg.NATS)
	if err != nil {
		return nil, err
	}
	// Presence frames are answered for the cluster, through the server
	// API, which starts with the node.
	cfg.Session.Presence = func(ctx context.Context, channel string) (int, map[string]int, error) {
		if n.api == nil {
			return 0, nil, errors.New("the server API has not started")
		}
		return n.api.Presence(ctx, channel)
	}
	store, err := history.New(b.Subjects().Prefix, cfg.Session.Rules, cfg.History, log.With("component", "history"))
	if err != nil {
		return nil, err
	}
	if store.Enabled() {
		n.store = store
		cfg.Session.History = store
	}
	switch {
	case o.authorize != nil:
		cfg.Gateway.Authorize = o.authorize
	case cfg.Auth.Mode != auth.ModeNone:
		a, err := auth.New(cfg.Auth, cfg.Node, b.AuthRequest)
		if err != nil {
			return nil, err
		}
		cfg.Gateway.Authorize = a.Authenticate
		if cfg.Auth.Mode == auth.ModeJWT {
			cfg.Session.Refresh = a.Refresh
		}
	}
	hub, err := session.New(cfg.Session, b, backend{b}, o.handler)
	if err != nil {
		return nil, err
	}
	cfg.Gateway.Metrics = append(cfg.Gateway.Metrics, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushgrid_routes",
		Help: "Peer nodes this node's embedded NATS server has a route to.",
	}, func() float64 { return float64(b.Routes()) }))
	gw, err := gateway.New(cfg.Gateway, hub)
	if err != nil {
		return nil, err
	}
	sio, err := socketio.New(cfg.SocketIO, hub, gw, b)
	if err != nil {
		return nil, err
	}
	if err := gw.Mount(sio.Path(), sio); err != nil {
		return nil, fmt.Errorf("socketio.path: %w", err)
	}
	if err := gw.MountUpgrades(sio.TakesUpgrade, sio); err != nil {
		return nil, err
	}
	n.broker, n.hub, n.gateway, n.sio = b, hub, gw, sio
	n.anyUser = cfg.Gateway.Authorize == nil
	if cfg.Admin.Listen != "" {
		call := func(ctx context.Context, method string, req []byte) []byte {
			if n.api == nil {
				return []byte(`{"error":"the server API has not started"}` + "\n")
			}
			return n.api.Call(ctx, method, req)
		}
		n.admin = gw.AdminServer(gateway.AdminHandler(gateway.Admin{Hub: hub, Nodes: func() any { return b.Nodes() },
			Cluster: n.clusterView, Call: call, Token: cfg.Admin.Token}))
	}
	return n, nil
}

// Start starts the node: the broker (and with it the node's place in the
// cluster), the gateway, then the admin API. On error, what it started is
// stopped again. A node starts once.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("node: Start called twice")
	}
	n.started = true
	if n.takeover != nil {
		// The sockets first: the previous process lets go of the rest
		// only once this one holds them.
		if err := n.gateway.Listen(ctx); err != nil {
			return err
		}
		if err := n.listenAdmin(); err != nil {
			n.gateway.StopAccepting(ctx)
			return err
		}
		if err := n.takeover.ready(); err != nil {
			n.closeListeners(ctx)
			return fmt.Errorf("take over: %w", err)
		}
	}
	if err := n.broker.Start(ctx, n.hub); err != nil {
		n.closeListeners(ctx)
		return err
	}
	if n.store != nil {
		if err := n.store.Start(n.broker.Conn()); err != nil {
			n.abortStart(ctx)
			return fmt.Errorf("history: %w", err)
		}
		n.streams.Add(1)
		go n.keepStreams()
	}
	if err := n.subscribeRosters(); err != nil {
		n.abortStart(ctx)
		return fmt.Errorf("rosters: %w", err)
	}
	n.streams.Add(1)
	go n.runRoster(n.stopStreams)
	var store api.Store
	if n.store != nil {
		store = n.store
	}
	n.api = api.New(n.hub, n.broker, store, n.log.With("component", "api"), func(method string, failed bool) {
		result := "ok"
		if failed {
			result = "error"
		}
		n.apiRequests.WithLabelValues(method, result).Inc()
	})
	if err := n.api.Start(); err != nil {
		n.abortStart(ctx)
		return fmt.Errorf("server API: %w", err)
	}
	// Other nodes relay here the requests of Socket.IO sessions this
	// node holds.
	if err := n.broker.HandleRelay(n.sio.HandleRelay); err != nil {
		n.abortStart(ctx)
		return fmt.Errorf("socketio relay: %w", err)
	}
	if err := n.gateway.Start(ctx); err != nil {
		n.abortStart(ctx)
		return err
	}
	if err := n.listenAdmin(); err != nil {
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		n.gateway.StopAccepting(stop)
		_ = n.gateway.Shutdown(stop)
		n.stopBackground()
		_ = n.broker.Shutdown(stop)
		return err
	}
	if n.adminLn != nil {
		ln := n.adminLn
		n.adminRun.Add(1)
		go func() {
			defer n.adminRun.Done()
			if err := n.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("admin API", "err", err)
			}
		}()
	}
	if n.anyUser && !loopback.Only(n.cfg.Gateway.Listen) {
		n.log.Warn("auth.mode is none and the gateway listens beyond loopback: any client can be any user; set auth.mode to jwt or hook",
			"listen", n.cfg.Gateway.Listen)
	}
	n.log.Info("pushgrid started", "gateway", n.gateway.Addr().String(), "nats", n.broker.ClientURL(),
		"cluster", n.broker.ClusterURL(), "admin", n.AdminAddr())
	return nil
}

// abortStart undoes what Start did before it failed past the broker's
// start.
func (n *Node) abortStart(ctx context.Context) {
	n.stopBackground()
	_ = n.broker.Shutdown(context.WithoutCancel(ctx))
	n.closeListeners(ctx)
}

// listenAdmin opens the admin API's listener, unless it is open or off.
func (n *Node) listenAdmin() error {
	if n.admin == nil || n.adminLn != nil {
		return nil
	}
	open := func() ([]net.Listener, error) {
		ln, err := net.Listen("tcp", n.cfg.Admin.Listen)
		return []net.Listener{ln}, err
	}
	var ls []net.Listener
	var err error
	if n.listen != nil {
		ls, err = n.listen("admin "+n.cfg.Admin.Listen, 1, open)
	} else {
		ls, err = open()
	}
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	n.adminLn = ls[0]
	return nil
}

// closeListeners closes the listeners a failed Start opened.
func (n *Node) closeListeners(ctx context.Context) {
	n.gateway.StopAccepting(context.WithoutCancel(ctx))
	if n.adminLn != nil {
		_ = n.adminLn.Close()
	}
}

// Shutdown stops the node, in the reverse order of Start: the gateway
// stops taking clients (/readyz 503, listeners closed); connected clients
// are served for gateway.drain, or until none is left, then closed with
// 1001; their sockets finish closing; the admin API stops; the node leaves
// the cluster. ctx bounds the whole; past it, what is left is cut short.
// It is safe to call more than once, and before Start; later calls return
// the first result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() { n.shutErr = n.shutdown(ctx) })
	return n.shutErr
}

// claimStop makes a Start from now on fail, and reports whether the node
// had started: Shutdown and Handover have something to stop.
func (n *Node) claimStop() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	started := n.started
	n.started = true
	return started
}

func (n *Node) shutdown(ctx context.Context) error {
	if !n.claimStop() {
		return nil
	}
	n.gateway.StopAccepting(ctx)
	drain, cancel := context.WithTimeout(ctx, n.cfg.Gateway.Drain)
	errHub := n.hub.Shutdown(drain)
	cancel()
	errSIO := n.sio.Shutdown(ctx)
	errGW := n.gateway.Shutdown(ctx)
	if n.adminLn != nil {
		_ = n.admin.Close()
		n.adminRun.Wait()
	}
	n.stopBackground()
	if n.api != nil {
		n.api.Stop()
	}
	n.stepDown(ctx)
	errB := n.broker.Shutdown(ctx)
	return errors.Join(errHub, errSIO, errGW, errB)
}

// stepDownWait bounds how long a stopping node waits for other replicas to
// take over the history streams it leads.
const stepDownWait = 3 * time.Second

// stepDown hands the leadership of the history streams this node leads to
// other replicas before its NATS server stops.
func (n *Node) stepDown(ctx context.Context) {
	if n.store == nil || len(n.broker.Nodes()) < 2 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stepDownWait)
	defer cancel()
	if err := n.store.StepDown(ctx, n.cfg.Node); err != nil {
		n.log.Warn("history streams' leadership not handed over: they pause until JetStream elects another leader (4 to 9 s)", "err", err)
	}
}

// Handover stops the node for an in-place restart, once the next process
// of the node holds its listening sockets (WithListeners, WithTakeover):
// this process stops accepting (its copies of the sockets close; the next
// process's stay open); the broker leaves the cluster and shuts the
// embedded NATS server down, which frees its ports and store for the next
// process (backends' NATS clients reconnect to it, or to another node);
// then this process's clients are closed with 1012 "service restart"
// spread evenly over gateway.drain, and come back to the next process at
// once. Its clients receive nothing live from the broker's shutdown on;
// the other nodes make them leave their channels (their rosters), and
// clients of history channels resume with since. ctx bounds the whole.
// It is Shutdown's alternative: whichever is called first runs, and later
// calls of either return its result.
func (n *Node) Handover(ctx context.Context) error {
	n.shutOnce.Do(func() { n.shutErr = n.handover(ctx) })
	return n.shutErr
}

func (n *Node) handover(ctx context.Context) error {
	if !n.claimStop() {
		return nil
	}
	n.gateway.HandOver(ctx)
	n.hub.HandingOver()
	if n.adminLn != nil {
		_ = n.admin.Close()
		n.adminRun.Wait()
	}
	n.handingOver.Store(true)
	n.stopBackground()
	if n.api != nil {
		n.api.Stop()
	}
	n.stepDown(ctx)
	errB := n.broker.Shutdown(ctx)
	errHub := n.hub.Restart(ctx, n.cfg.Gateway.Drain)
	errSIO := n.sio.Shutdown(ctx)
	errGW := n.gateway.Shutdown(ctx)
	return errors.Join(errB, errHub, errSIO, errGW)
}

// stopBackground stops keepStreams and runRoster and waits for them; it
// may be called more than once.
func (n *Node) stopBackground() {
	n.stopOnce.Do(func() { close(n.stopStreams) })
	n.streams.Wait()
}

// keepStreams creates the history rules' streams, and raises their
// replicas to min(3, live nodes) as nodes join, until the node stops. A
// stream's replicas are never lowered: a node that died may come back,
// and its replicas keep a majority meanwhile. Until the cluster's
// JetStream is ready (a first node waits for a second to elect the
// metadata's leader) it tries again every few seconds.
func (n *Node) keepStreams() {
	defer n.streams.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	failing := false
	for {
		want := min(3, max(1, len(n.broker.Nodes())))
		if have := n.store.Replicas(); have < want {
			// Short: a new cluster's JetStream ignores requests for its
			// first seconds rather than refusing them.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := n.store.Ensure(ctx, max(want, have))
			cancel()
			switch {
			case err != nil && !failing:
				n.log.Warn("history streams not ready; retrying", "replicas", want, "err", err)
				failing = true
			case err == nil:
				n.log.Info("history streams ready", "replicas", want)
				failing = false
			}
		}
		select {
		case <-n.stopStreams:
			return
		case <-t.C:
		}
	}
}

// storedTotal reads pushgrid_history_stored_total: the last value when
// the store does not answer (a counter must not go back).
func (n *Node) storedTotal() float64 {
	n.storedMu.Lock()
	defer n.storedMu.Unlock()
	if n.store == nil || n.broker.Conn() == nil {
		return n.stored
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if total, err := n.store.StoredTotal(ctx); err == nil {
		n.stored = max(n.stored, float64(total))
	}
	return n.stored
}

// HistoryReplicas is the replicas of the history channels' streams as
// this node last set them: 0 until they exist (or when no rule keeps
// history).
func (n *Node) HistoryReplicas() int {
	if n.store == nil {
		return 0
	}
	return n.store.Replicas()
}

// status is what the node's heartbeats tell the cluster.
func (n *Node) status() broker.Status {
	conns, chans := n.hub.Counts()
	in, out := n.hub.Traffic()
	st := broker.Status{Connections: conns, Channels: chans, Received: in, Delivered: out, Version: n.version, Routes: -1}
	if n.broker.Server() != nil {
		st.Routes = n.broker.Routes()
	}
	if a := n.gateway.Addr(); a != nil {
		st.Gateway = a.String()
	}
	return st
}

// clusterView is the admin page's view of the cluster: each live node's
// figures as its last beat said, and the nodes that stopped beating.
func (n *Node) clusterView() any {
	type nodeView struct {
		Node        string `json:"node"`
		Status      string `json:"status"` // up, down (stopped beating) or left (shut down)
		Gateway     string `json:"gateway,omitempty"`
		Connections int    `json:"connections"`
		Channels    int    `json:"channels"`
		Received    uint64 `json:"received"`
		Delivered   uint64 `json:"delivered"`
		UptimeS     int64  `json:"uptime_s"`
		Version     string `json:"version,omitempty"`
		Routes      int    `json:"routes"` // peers it has a route to; -1 on an external NATS
		LastSeen    string `json:"last_seen"`
	}
	now := time.Now()
	view := func(b broker.Node, status string) nodeView {
		v := nodeView{Node: b.Name, Status: status, Gateway: b.Gateway, Connections: b.Connections, Channels: b.Channels,
			Received: b.Received, Delivered: b.Delivered, Version: b.Version, Routes: b.Routes, LastSeen: b.At.UTC().Format(time.RFC3339Nano)}
		if !b.Started.IsZero() && status == "up" {
			v.UptimeS = int64(now.Sub(b.Started).Seconds())
		}
		return v
	}
	nodes := []nodeView{}
	for _, b := range n.broker.Nodes() {
		nodes = append(nodes, view(b, "up"))
	}
	for _, b := range n.broker.Departed() {
		status := "down"
		if b.Leaving {
			status = "left"
		}
		nodes = append(nodes, view(b, status))
	}
	return map[string]any{"node": n.cfg.Node, "at": now.UTC().Format(time.RFC3339Nano), "nodes": nodes}
}

// Config is the node's configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Name is the node's name in the cluster.
func (n *Node) Name() string { return n.cfg.Node }

// Addr is the gateway's address (WebSocket /ws and HTTP), nil before Start.
func (n *Node) Addr() net.Addr { return n.gateway.Addr() }

// AdminAddr is the admin API's address, "" when it is off.
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

// NATSURL is the URL backends use to reach this node's NATS.
func (n *Node) NATSURL() string { return n.broker.ClientURL() }

// ClusterURL is the route URL other nodes can give as a seed, "" when
// routes are off.
func (n *Node) ClusterURL() string { return n.broker.ClusterURL() }

// Broker is the node's bus, for what a Go program does with NATS directly
// (its Conn publishes on the node's own connection).
func (n *Node) Broker() *broker.Broker { return n.broker }

// Hub is the node's session hub: every client connection of this node.
func (n *Node) Hub() *session.Hub { return n.hub }

// Gateway is the node's WebSocket and HTTP edge.
func (n *Node) Gateway() *gateway.Gateway { return n.gateway }

// backend is the broker as session.Backend: it turns the broker's
// no-responders error into the session's.
type backend struct{ *broker.Broker }

var (
	_ session.Bus     = (*broker.Broker)(nil)
	_ session.Backend = backend{}
	_ broker.Receiver = (*session.Hub)(nil)
)

func (b backend) Send(ctx context.Context, typ, user, conn string, payload []byte, wantReply bool) ([]byte, error) {
	reply, err := b.Broker.Send(ctx, typ, user, conn, payload, wantReply)
	if errors.Is(err, broker.ErrNoResponders) {
		err = session.ErrNoHandler
	}
	return reply, err
}

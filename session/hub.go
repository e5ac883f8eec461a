package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"
)

// Hub is this node's side of every client connection: identities, channel
// memberships, the protocol's rules, and local delivery of what the bus
// brings in.
type Hub struct {
	cfg     Config
	bus     Bus
	backend Backend
	handler Handler
	log     *slog.Logger
	store   HistoryStore // cfg.History

	mu       sync.RWMutex
	channels map[string]*channel // guarded by mu
	users    map[string][]*Conn  // guarded by mu
	conns    map[string]*Conn    // guarded by mu
	draining bool                // guarded by mu
	leaving  Disconnect          // guarded by mu; how a Connect while draining is closed

	epoch  time.Time // rate limiting measures time from here
	limits *limiter
	bounds queueBounds // every connection's outgoing queue bounds

	// live counts connections from Connect until their disconnect is done
	// (OnDisconnect returned), and requests custom frames waiting for a
	// backend's reply: Shutdown waits for both to be 0.
	live     atomic.Int64
	requests atomic.Int64
	stats    counters
	roster   rosterLog // what changed for the cluster's rosters (roster.go)

	pool     chan *Conn // idle pool workers wait here for a connection with frames
	poolOnce sync.Once
	workers  sync.WaitGroup
	closed   chan struct{} // closed by stopWorkers: pool workers exit
	stopOnce sync.Once

	shutOnce sync.Once
	shutErr  error
}

// Log attribute keys.
const (
	logConn    = "conn"
	logChannel = "channel"
	logErr     = "err"
)

// New returns a hub that uses bus for channels and backend for events and
// custom frames. handler may be nil.
func New(cfg Config, bus Bus, backend Backend, handler Handler) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if handler == nil {
		handler = NopHandler{}
	}
	return &Hub{
		cfg:      cfg,
		bus:      bus,
		backend:  backend,
		handler:  handler,
		log:      cfg.Logger,
		store:    cfg.History,
		channels: make(map[string]*channel),
		users:    make(map[string][]*Conn),
		epoch:    time.Now(),
		limits:   newLimiter(cfg.Rate, cfg.Burst),
		bounds:   queueBounds{frames: cfg.QueueFrames, bytes: cfg.QueueBytes},
		pool:     make(chan *Conn),
		closed:   make(chan struct{}),
		conns:    make(map[string]*Conn),
	}, nil
}

// Config returns the hub's configuration with defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Connect registers a new connection whose transport is t. id is who the
// gateway found it to be (a zero Identity: nobody yet) and remote the
// client address. The welcome frame is the connection's first frame.
func (h *Hub) Connect(t Transport, id Identity, remote netip.Addr) (*Conn, error) {
	user := id.User
	if user != "" && !ClaimableUser(user) {
		return nil, fmt.Errorf("user %q: %w", user, errBadUser)
	}
	if id.Verified && user == "" {
		return nil, fmt.Errorf("a verified identity without a user: %w", errBadUser)
	}
	c := &Conn{hub: h, id: nuid.Next(), remote: remote, user: user, userSet: user != "",
		verified: id.Verified, claims: id.Channels}
	if user == "" {
		c.user = anonPrefix + c.id
	}
	c.out = outbox{t: t, bounds: &h.bounds, owner: c}
	c.bucket = h.limits.acquire(c.limitKey(), h.now())
	c.mu.Lock()
	c.expireAt(id.Expires, h.cfg.Leeway)
	c.mu.Unlock()

	// The welcome goes out before the connection can be found, so nothing
	// published to its user or id can overtake it; it is written outside
	// the hub's lock, which every connect and delivery shares.
	c.out.send(textFrame(encodeWelcome(c.id, h.cfg.Node, c.user)), 1)
	h.mu.Lock()
	if h.draining {
		leaving := h.leaving
		h.mu.Unlock()
		c.Close(leaving)
		h.limits.release(c.limitKey(), c.bucket, h.now())
		return nil, ErrDraining
	}
	h.conns[c.id] = c
	h.roster.touch(c.id)
	h.live.Add(1) // under mu, with draining false: Shutdown waits for it
	if c.userSet {
		h.indexUser(c, c.user)
	}
	h.mu.Unlock()

	h.remoteEvent(c, "connect")
	if err := h.handler.OnConnect(c); err != nil {
		var d Disconnect
		if !errors.As(err, &d) {
			d = Disconnect{ClosePolicy, err.Error()}
		}
		c.Close(d)
	}
	return c, nil
}

// now is the time since the hub's epoch, the clock of rate limiting.
func (h *Hub) now() time.Duration { return time.Since(h.epoch) }

// closedByServer accounts for a connection its outbox closed on its own.
func (c *Conn) closedByServer(d Disconnect) {
	if d.Code == CloseSlowConsumer {
		c.hub.stats.slowConsumers.Add(1)
		c.hub.log.Info("slow consumer closed", logConn, c.id)
	}
}

// closeWait bounds how long Shutdown waits for the connections it closed
// to be gone: each close frame follows what is queued for its client, every
// write bounded by the transport, and the transport lingers after it.
const closeWait = 15 * time.Second

// Shutdown stops the hub, the one way to. From the call on, Connect
// returns ErrDraining; connected clients are served until ctx is done or
// none is left (the drain); then the rest are closed with 1001 "going
// away" and waited for, at most closeWait, and so are requests still
// waiting for a backend; then the worker pool stops. The error names what
// was still open. It is safe to call more than once: later calls wait for
// the first and return its result.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.shutOnce.Do(func() { h.shutErr = h.shutdown(ctx) })
	return h.shutErr
}

func (h *Hub) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.draining, h.leaving = true, DisconnectGoingAway
	h.mu.Unlock()
	var err error
	if h.wait(ctx) != nil {
		h.closeAll(DisconnectGoingAway)
		closing, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeWait)
		err = h.wait(closing)
		cancel()
	}
	h.stopWorkers()
	return err
}

// HandingOver sends every connection that connects from now on back at
// once: it is welcomed and closed with 1012 "service restart" (Connect
// returns ErrDraining), as during Restart. A node whose listening sockets
// a new process took over calls it as its own stop begins, so that a
// client its listeners accepted just before joins nothing on a node that
// is shutting its broker down, but goes to the new process. Connections
// already open are served on until Restart or Shutdown closes them.
func (h *Hub) HandingOver() {
	h.mu.Lock()
	h.draining, h.leaving = true, DisconnectRestart
	h.mu.Unlock()
}

// Restart stops the hub for an in-place restart: a new process of the
// node serves the same address (PROTOCOL.md §1), so every connection is
// closed with 1012 "service restart", which tells its client to come back
// at once, and the closes are spread evenly over spread, so that the new
// process is not hit by every reconnect in the same instant. From the call
// on, Connect closes a new connection with 1012 and returns ErrDraining.
// Then, as Shutdown, it waits for the connections to be gone (at most
// closeWait) and stops the worker pool. ctx ending cuts the spread short.
// It is Shutdown's alternative: whichever is called first is the one that
// runs, and later calls of either return its result.
func (h *Hub) Restart(ctx context.Context, spread time.Duration) error {
	h.shutOnce.Do(func() { h.shutErr = h.restart(ctx, spread) })
	return h.shutErr
}

// restartTick is how often Restart closes its next share of connections.
const restartTick = 20 * time.Millisecond

func (h *Hub) restart(ctx context.Context, spread time.Duration) error {
	h.mu.Lock()
	h.draining, h.leaving = true, DisconnectRestart
	conns := make([]*Conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	steps := max(1, int(spread/restartTick))
	tick := time.NewTicker(restartTick)
	closed := 0
	for step := 1; step <= steps && closed < len(conns); step++ {
		upTo := (len(conns)*step + steps - 1) / steps
		for ; closed < upTo; closed++ {
			conns[closed].Close(DisconnectRestart)
		}
		if closed == len(conns) {
			break
		}
		select {
		case <-ctx.Done():
			step = steps // the rest at once
		case <-tick.C:
		}
	}
	tick.Stop()
	for ; closed < len(conns); closed++ {
		conns[closed].Close(DisconnectRestart)
	}
	closing, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeWait)
	err := h.wait(closing)
	cancel()
	h.stopWorkers()
	return err
}

// closeAll closes every connection with d once its queue is written.
func (h *Hub) closeAll(d Disconnect) {
	h.mu.RLock()
	conns := make([]*Conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	for _, c := range conns {
		c.Close(d)
	}
}

// wait waits until every connection has disconnected, its Handler's
// OnDisconnect returned, and every pending request has finished, or ctx
// ends.
func (h *Hub) wait(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		conns, requests := h.live.Load(), h.requests.Load()
		if conns == 0 && requests == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("session: %d connections and %d requests still open: %w", conns, requests, ctx.Err())
		case <-tick.C:
		}
	}
}

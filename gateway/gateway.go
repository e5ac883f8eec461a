package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgrid/pushgrid/session"
	"github.com/pushgrid/pushgrid/sticky"
)

// Gateway serves clients of one hub.
type Gateway struct {
	cfg      Config
	hub      *session.Hub
	log      *slog.Logger
	trusted  []netip.Prefix
	origins  originPolicy
	mode     sticky.Mode
	upgrader *gws.Upgrader // /ws: frames go to the hub
	edge     *gws.Upgrader // Upgrade: frames go to the caller (edge.go)
	srv      *http.Server
	registry *prometheus.Registry
	maxConns int         // the effective MaxConnections
	maxFrame int         // the session's MaxMessageBytes
	tls      *tls.Config // nil: plain ws:// and http://

	// open counts client connections open: accepted and not yet closed,
	// refusals of a full node aside. The socket's last owner decrements
	// it: net/http (connState), socketConn, or the handshake's refusals.
	open     atomic.Int64
	refusing atomic.Int64 // refusals of a full node lingering now
	// wsConns counts the hub's /ws connections: from the hub's Connect to
	// the end of their read loop (pushgrid_connections{transport="ws"}).
	wsConns atomic.Int64

	// builtin are the paths of the gateway's own routes; Mount refuses a
	// pattern that would take any of them. mounts, nil until the first
	// Mount, is set before Start and only read once serving.
	builtin []string
	mounts  *http.ServeMux
	light   []lightRoute // set before Start (MountUpgrades), only read once serving

	countMu sync.Mutex
	counts  map[string]int64 // guarded by countMu; CountConnections' figures by transport

	mu        sync.Mutex
	listeners []net.Listener // guarded by mu; the workers' sockets
	handoffs  []*handoff     // guarded by mu; what each worker gives net/http
	serving   sync.WaitGroup

	ready    atomic.Bool // true between Start and StopAccepting or HandOver: /readyz answers 200
	closed   atomic.Bool // true until Start and after StopAccepting (not HandOver): handshakes are answered 503
	stopOnce sync.Once
}

// New checks cfg and returns a gateway for hub. It starts nothing.
func New(cfg Config, hub *session.Hub) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	mode, _ := sticky.ParseMode(cfg.Sticky)
	trusted, _ := sticky.ParsePrefixes(cfg.TrustedProxies)
	origins, _ := parseOrigins(cfg.Origins)
	g := &Gateway{cfg: cfg, hub: hub, log: cfg.Logger, trusted: trusted, origins: origins, mode: mode,
		maxConns: cfg.MaxConnections, maxFrame: hub.Config().MaxMessageBytes}
	if g.maxConns == 0 {
		g.maxConns = MaxConnectionsFor(openFileLimit())
	}
	g.closed.Store(true)
	g.upgrader = gws.NewUpgrader(&events{hub: hub, wsConns: &g.wsConns}, g.wsOptions(func() gws.SessionStorage { return new(connRef) }))
	g.edge = gws.NewUpgrader(edgeEvents{}, g.wsOptions(func() gws.SessionStorage { return new(edgeRef) }))
	registry, err := newRegistry(g, cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("gateway.metrics: %w", err)
	}
	g.registry = registry
	if g.tls, err = cfg.loadTLS(); err != nil {
		return nil, err
	}
	g.srv = g.httpServer(g.routes())
	g.srv.BaseContext = g.workerContext
	g.srv.ConnContext = withTLSState
	g.srv.ConnState = g.connState
	// Also bounds a client that never reads a response: it cannot hold a
	// handler. (A hijacked connection's deadlines are cleared.)
	g.srv.WriteTimeout = cfg.WriteTimeout
	return g, nil
}

// wsOptions are the options of the gateway's upgraders: the bounds of
// every client socket, whoever reads its frames. newSession makes the
// socket's storage, which says who that is.
func (g *Gateway) wsOptions(newSession func() gws.SessionStorage) *gws.ServerOption {
	return &gws.ServerOption{
		ReadMaxPayloadSize: g.maxFrame,
		ReadBufferSize:     readBufferSize,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   g.cfg.WriteTimeout,
		NewSession:         newSession,
		Recovery:           gws.Recovery,
	}
}

// httpServer is an http.Server for h with the gateway's request timeouts:
// a head within HandshakeTimeout and its body within as long again, and
// idle keep-alive connections closed after IdleTimeout.
func (g *Gateway) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: g.cfg.HandshakeTimeout,
		ReadTimeout:       2 * g.cfg.HandshakeTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}

// AdminServer returns the http.Server to serve h (AdminHandler's) with:
// the gateway's handshake and idle timeouts apply to it too. It has no
// server-wide write timeout, which would make pprof refuse its profiles (30
// s by default); instead each response must be written within
// WriteTimeout, plus the seconds a /debug/pprof/ request asks for. The
// caller sets Addr or calls Serve, and shuts it down.
func (g *Gateway) AdminServer(h http.Handler) *http.Server {
	timeout := g.cfg.WriteTimeout
	return g.httpServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := timeout
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			d += pprofDuration(r)
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	}))
}

// pprofDuration is how long a pprof request takes by its own account: its
// seconds parameter, or the profile's default of 30 s; at most an hour.
func pprofDuration(r *http.Request) time.Duration {
	sec, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
	switch {
	case err == nil && sec > 0:
		return time.Duration(min(sec, 3600) * float64(time.Second))
	case r.URL.Path == "/debug/pprof/profile":
		return 30 * time.Second
	}
	return 0
}

// connState stops counting the connections net/http closes. Those it
// hands over (a /ws request after another) are counted until the
// WebSocket closes.
func (g *Gateway) connState(_ net.Conn, s http.ConnState) {
	if s == http.StateClosed {
		g.open.Add(-1)
	}
}

// MaxConnections is the most client connections the gateway keeps open at
// once: Config.MaxConnections, or what the open-file limit allows.
func (g *Gateway) MaxConnections() int { return g.maxConns }

// sockets is how many client connections are open.
func (g *Gateway) sockets() int64 { return g.open.Load() }

// workerKey is the context key of the index of the worker listener that
// accepted a request.
type workerKey struct{}

// workerContext tags every request with the index of its worker listener,
// which the X-Pushgrid-Worker header reports, so that stickiness can be seen
// from outside.
func (g *Gateway) workerContext(l net.Listener) context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, w := range g.handoffs {
		if w == l {
			return context.WithValue(context.Background(), workerKey{}, i)
		}
	}
	return context.Background()
}

// tlsStateKey is the context key of the TLS state of a connection that
// net/http serves.
type tlsStateKey struct{}

// withTLSState keeps the TLS state of a connection for its requests'
// r.TLS, which net/http sets only for a *tls.Conn of its own: the
// connections it is handed went through the handshake already and come
// wrapped (see replayConn).
func withTLSState(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok {
		if tc, ok := rc.Conn.(*tls.Conn); ok {
			st := tc.ConnectionState()
			return context.WithValue(ctx, tlsStateKey{}, &st)
		}
	}
	return ctx
}

// routes is the gateway's handler: the handlers of Mount first, then its
// own GET routes. Mounted handlers come first, in a mux of their own: a
// pattern such as "/socket.io/" (any method) conflicts with "GET /" in one
// mux, which panics on it.
func (g *Gateway) routes() http.Handler {
	own := []struct {
		path string
		h    http.Handler
	}{
		{"/ws", http.HandlerFunc(g.serveWS)},
		{"/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		})},
		{"/readyz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !g.ready.Load() {
				http.Error(w, "not ready\n", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ready\n"))
		})},
		{"/metrics", metricsHandler(g.registry)},
		{"/", demoHandler()}, // and 404 for every path no route takes
	}
	mux := http.NewServeMux()
	for _, r := range own {
		mux.Handle(http.MethodGet+" "+r.path, r.h)
		g.builtin = append(g.builtin, r.path)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i, ok := r.Context().Value(workerKey{}).(int); ok {
			w.Header().Set("X-Pushgrid-Worker", strconv.Itoa(i))
		}
		if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
			r.TLS = st
		}
		if g.mounts != nil {
			if h, pattern := g.mounts.Handler(r); pattern != "" {
				h.ServeHTTP(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// Listen opens the worker listeners without serving on them yet:
// connections wait in the kernel's accept queue until Start. Start calls
// it when it has not been called; calling it twice is an error.
func (g *Gateway) Listen(ctx context.Context) error {
	g.mu.Lock()
	opened := g.listeners != nil
	g.mu.Unlock()
	if opened {
		return errors.New("gateway: Listen called twice")
	}
	open := func() ([]net.Listener, error) { return sticky.Listen(ctx, g.cfg.Listen, g.cfg.Workers, g.mode, g.log) }
	var ls []net.Listener
	var err error
	if g.cfg.Listeners != nil {
		ls, err = g.cfg.Listeners(g.cfg.Workers, open)
	} else {
		ls, err = open()
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.listeners = ls
	g.mu.Unlock()
	return nil
}

// Start serves on the worker listeners, opening them first unless Listen
// has.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	opened := g.listeners != nil
	g.mu.Unlock()
	if !opened {
		if err := g.Listen(ctx); err != nil {
			return err
		}
	}
	if nofile := openFileLimit(); g.cfg.MaxConnections > MaxConnectionsFor(nofile) {
		g.log.Warn("gateway.max_connections is more than the open-file limit allows: past that, accepts fail",
			"max_connections", g.cfg.MaxConnections, "allowed", MaxConnectionsFor(nofile), "open_file_limit", nofile)
	}
	g.mu.Lock()
	ls := g.listeners
	for _, l := range ls {
		g.handoffs = append(g.handoffs, newHandoff(l.Addr()))
	}
	hs := g.handoffs
	g.mu.Unlock()
	for i, l := range ls {
		g.serving.Add(2)
		go func() {
			defer g.serving.Done()
			g.acceptLoop(l, hs[i])
		}()
		go func() {
			defer g.serving.Done()
			if err := g.srv.Serve(hs[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	g.closed.Store(false)
	g.ready.Store(true)
	return nil
}

// Addr is the address the workers listen on.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.listeners) == 0 {
		return nil
	}
	return g.listeners[0].Addr()
}

// StopAccepting takes the gateway out of service: /readyz turns 503, the
// listeners close at once (new clients go to other nodes), handshakes
// still arriving on connections accepted before are answered 503, and
// net/http's connections are closed once idle. WebSockets already open go
// on: the hub's Shutdown drains and closes them. It is safe to call more
// than once; after HandOver it does nothing (handshakes are still served).
func (g *Gateway) StopAccepting(ctx context.Context) { g.stopListening(ctx, true) }

// HandOver is StopAccepting for a process whose listeners another process
// took over (an in-place restart): the shared sockets' new connections go
// to that process alone once these close, and a handshake on a connection
// this process accepted just before is still served, not refused, since
// its client did nothing wrong: the hub, handing over (Hub.HandingOver),
// welcomes it and closes it with 1012 so that it comes back to the new
// process.
func (g *Gateway) HandOver(ctx context.Context) { g.stopListening(ctx, false) }

func (g *Gateway) stopListening(ctx context.Context, refuse bool) {
	g.stopOnce.Do(func() {
		g.closed.Store(refuse)
		g.ready.Store(false)
		g.mu.Lock()
		for _, l := range g.listeners {
			_ = l.Close()
		}
		g.mu.Unlock()
		// http.Server.Shutdown does not wait for hijacked (WebSocket)
		// connections.
		closeCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := g.srv.Shutdown(closeCtx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			g.log.Warn("close listeners", "err", err)
		}
		g.serving.Wait()
	})
}

// Shutdown stops accepting (see StopAccepting) and waits, until ctx ends,
// for every client socket to be closed, lingering closes included: a
// process that exits first resets them, which can destroy the close frames
// on their way. Closing the WebSockets is the hub's job: call the hub's
// Shutdown between StopAccepting and Shutdown. It is safe to call more
// than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.StopAccepting(ctx)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n := g.open.Load()
		if n <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway: %d client sockets still open: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

// serveWS upgrades a request that came through net/http (a /ws request
// after another on a keep-alive connection) and hands it to the hub.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	id, he := g.admit(r)
	if he != nil {
		writeJSONError(w, he.Status, he.Msg)
		return
	}
	conn, pending, err := hijack(w)
	if err != nil {
		g.log.Debug("hijack failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	sc := &socketConn{Conn: conn, g: g}
	socket, err := g.upgrader.UpgradeFromConn(sc, bufio.NewReaderSize(sc, readBufferSize), r)
	if err != nil {
		g.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // gws answered 400 and closed sc
	}
	sc.adopt(pending)
	g.attach(socket, sc, nil, id, r)
}

// hijack takes a request's connection from net/http for a WebSocket: the
// socket, and the bytes the client sent after the request. If w cannot be
// hijacked it answers 500.
func hijack(w http.ResponseWriter) (net.Conn, []byte, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeJSONError(w, http.StatusInternalServerError, "this connection cannot be upgraded")
		return nil, nil, errors.New("gateway: hijack: the response writer is no http.Hijacker")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: hijack: %w", err)
	}
	// The request's read and write deadlines are net/http's, not the
	// WebSocket's.
	_ = conn.SetDeadline(time.Time{})
	// Bytes the client sent after the request: what net/http's reader
	// holds, then what the handoff's reader under it holds. The socket
	// itself, not the handoff's wrapper, becomes the WebSocket's, and gws
	// reads through a reader of its own, smaller than net/http's.
	pending := buffered(rw.Reader)
	if rc, ok := conn.(*replayConn); ok {
		if more := buffered(rc.r); len(more) > 0 {
			pending = append(pending[:len(pending):len(pending)], more...)
		}
		conn = rc.Conn
	}
	return conn, pending, nil
}

func clientIP(r *http.Request, g *Gateway) netip.Addr { return sticky.ClientIP(r, g.trusted) }

// admit decides, before the upgrade, whether a request may connect and
// who it is.
func (g *Gateway) admit(r *http.Request) (session.Identity, *HTTPError) {
	if g.closed.Load() {
		return session.Identity{}, &HTTPError{http.StatusServiceUnavailable, "the node is shutting down"}
	}
	if !g.origins.allows(r) {
		return session.Identity{}, &HTTPError{http.StatusForbidden, "origin not allowed"}
	}
	id, err := g.identify(r)
	if err != nil {
		var he *HTTPError
		if !errors.As(err, &he) {
			he = &HTTPError{http.StatusForbidden, err.Error()}
		}
		return session.Identity{}, he
	}
	return id, nil
}

// identify finds who an upgrade request is, before the upgrade. The name
// is returned as a copy: the light path's request strings share one buffer
// of the whole head, which the connection would otherwise keep alive for
// its whole life.
func (g *Gateway) identify(r *http.Request) (session.Identity, error) {
	if g.cfg.Authorize != nil {
		id, err := g.cfg.Authorize(r, clientIP(r, g))
		if err != nil {
			return session.Identity{}, err
		}
		if !session.ClaimableUser(id.User) {
			g.log.Error("authorize gave an invalid user", "user", id.User)
			return session.Identity{}, &HTTPError{http.StatusForbidden, fmt.Sprintf("invalid user name %q", id.User)}
		}
		id.User = strings.Clone(id.User)
		id.Verified = true
		return id, nil
	}
	user, err := queryValue(r.URL.RawQuery, "user")
	if err != nil {
		return session.Identity{}, &HTTPError{http.StatusBadRequest, "the user parameter is not a valid query value"}
	}
	if user != "" && !session.ValidUser(user) {
		return session.Identity{}, &HTTPError{http.StatusBadRequest, fmt.Sprintf("invalid user name %q", user)}
	}
	if user != "" && !session.ClaimableUser(user) {
		return session.Identity{}, &HTTPError{http.StatusBadRequest, fmt.Sprintf("user %q: names starting with anon- are the server's", user)}
	}
	return session.Identity{User: strings.Clone(user)}, nil
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

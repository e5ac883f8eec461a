package gateway

import (
	"context"
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
	mode     sticky.Mode
	upgrader *gws.Upgrader
	srv      *http.Server
	registry *prometheus.Registry

	mu        sync.Mutex
	listeners []net.Listener // guarded by mu; the workers' sockets
	handoffs  []*handoff     // guarded by mu; what each worker gives net/http
	serving   sync.WaitGroup

	ready    atomic.Bool // true between Start and the first Shutdown
	shutOnce sync.Once
	shutErr  error
}

// New checks cfg and returns a gateway for hub. It starts nothing.
func New(cfg Config, hub *session.Hub) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mode, _ := sticky.ParseMode(cfg.Sticky)
	trusted, _ := sticky.ParsePrefixes(cfg.TrustedProxies)
	g := &Gateway{cfg: cfg, hub: hub, log: cfg.Logger, trusted: trusted, mode: mode}
	g.upgrader = gws.NewUpgrader(&events{hub: hub}, &gws.ServerOption{
		ReadMaxPayloadSize: hub.Config().MaxMessageBytes,
		ReadBufferSize:     readBufferSize,
		CheckUtf8Enabled:   true,
		HandshakeTimeout:   cfg.WriteTimeout,
		NewSession:         func() gws.SessionStorage { return new(connRef) },
		Recovery:           gws.Recovery,
	})
	g.registry = newRegistry(hub)
	g.srv = &http.Server{
		Handler:           g.routes(),
		BaseContext:       g.workerContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	return g, nil
}

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

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", g.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", metricsHandler(g.registry))
	mux.Handle("GET /", demoHandler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i, ok := r.Context().Value(workerKey{}).(int); ok {
			w.Header().Set("X-Pushgrid-Worker", strconv.Itoa(i))
		}
		mux.ServeHTTP(w, r)
	})
}

// Start opens the worker listeners and serves on them.
func (g *Gateway) Start(ctx context.Context) error {
	ls, err := sticky.Listen(ctx, g.cfg.Listen, g.cfg.Workers, g.mode, g.log)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.listeners = ls
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

// Ready reports whether the gateway accepts new clients.
func (g *Gateway) Ready() bool { return g.ready.Load() }

// Shutdown drains the gateway: /readyz turns 503 and the listeners close at
// once; connected clients keep being served for Config.Drain (or until none
// is left), then each is closed with 1001. It returns when every client is
// gone or ctx ends. It is safe to call more than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.shutOnce.Do(func() { g.shutErr = g.shutdown(ctx) })
	return g.shutErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	g.ready.Store(false)
	g.hub.Drain()
	// Closing the listeners now sends new clients to other nodes while the
	// connected ones finish. http.Server.Shutdown does not wait for
	// hijacked (WebSocket) connections.
	g.mu.Lock()
	for _, l := range g.listeners {
		_ = l.Close()
	}
	g.mu.Unlock()
	closeCtx, cancel := context.WithTimeout(ctx, time.Second)
	err := g.srv.Shutdown(closeCtx)
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		g.log.Warn("close listeners", "err", err)
	}
	g.serving.Wait()

	drainCtx, cancel := context.WithTimeout(ctx, g.cfg.Drain)
	defer cancel()
	if g.hub.Wait(drainCtx) == nil {
		return nil
	}
	g.hub.CloseAll(session.DisconnectGoingAway)
	closeWait, cancel2 := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel2()
	if err := g.hub.Wait(closeWait); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// serveWS upgrades a request that came through net/http (a /ws request
// after another on a keep-alive connection) and hands it to the hub.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	user, he := g.admit(r)
	if he != nil {
		writeJSONError(w, he.Status, he.Msg)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeJSONError(w, http.StatusInternalServerError, "this connection cannot be upgraded")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		g.log.Debug("hijack failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// net/http's reader, which may hold bytes the client sent after the
	// request.
	sc := &socketConn{Conn: conn}
	socket, err := g.upgrader.UpgradeFromConn(sc, rw.Reader, r)
	if err != nil {
		g.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // gws answered 400 and closed
	}
	g.attach(socket, sc, nil, user, r)
}

func clientIP(r *http.Request, g *Gateway) netip.Addr { return sticky.ClientIP(r, g.trusted) }

// admit decides, before the upgrade, whether a request may connect and as
// which user.
func (g *Gateway) admit(r *http.Request) (string, *HTTPError) {
	if !g.ready.Load() {
		return "", &HTTPError{http.StatusServiceUnavailable, "the node is shutting down"}
	}
	user, err := g.identify(r)
	if err != nil {
		var he *HTTPError
		if !errors.As(err, &he) {
			he = &HTTPError{http.StatusForbidden, err.Error()}
		}
		return "", he
	}
	return user, nil
}

// identify finds the user of an upgrade request before the upgrade. The
// name is returned as a copy: the light path's request strings share one
// buffer of the whole head, which the connection would otherwise keep alive
// for its whole life.
func (g *Gateway) identify(r *http.Request) (string, error) {
	if g.cfg.Authorize != nil {
		user, err := g.cfg.Authorize(r)
		return strings.Clone(user), err
	}
	user, err := queryValue(r.URL.RawQuery, "user")
	if err != nil {
		return "", &HTTPError{http.StatusBadRequest, "the user parameter is not a valid query value"}
	}
	if user != "" && !session.ValidUser(user) {
		return "", &HTTPError{http.StatusBadRequest, fmt.Sprintf("invalid user name %q", user)}
	}
	return strings.Clone(user), nil
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

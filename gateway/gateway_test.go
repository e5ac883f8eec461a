package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgrid/pushgrid/session"
)

type nullBus struct{}

func (nullBus) Subscribe(string) error            { return nil }
func (nullBus) Unsubscribe(string)                {}
func (nullBus) Publish(string, []byte) error      { return nil }
func (nullBus) PublishEvent(string, []byte) error { return nil }
func (nullBus) Listening(string) bool             { return false }
func (nullBus) Send(context.Context, string, string, string, []byte, bool) ([]byte, error) {
	return nil, session.ErrNoHandler
}

func status(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code
}

// TestReadiness: /readyz is 503 before Start and from the first moment of
// Shutdown; /healthz is 200 throughout; /ws is refused while draining.
func TestReadiness(t *testing.T) {
	hub, err := session.New(session.Config{Node: "g1"}, nullBus{}, nullBus{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Listen: "127.0.0.1:0", Workers: 2, Drain: 50 * time.Millisecond}, hub)
	if err != nil {
		t.Fatal(err)
	}
	h := g.srv.Handler
	if status(h, "/readyz") != 503 || status(h, "/healthz") != 200 {
		t.Fatal("ready before Start")
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status(h, "/readyz") != 200 {
		t.Fatal("not ready after Start")
	}
	if err := stopGateway(g); err != nil {
		t.Fatal(err)
	}
	if err := stopGateway(g); err != nil {
		t.Fatal("second Shutdown:", err)
	}
	if status(h, "/readyz") != 503 || status(h, "/healthz") != 200 || status(h, "/ws") != 503 {
		t.Fatal("still ready while drained")
	}
	if status(h, "/nope") != 404 {
		t.Fatal("unknown path")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []Config{
		{Listen: "nope"},
		{Workers: -1},
		{Sticky: "sometimes"},
		{TrustedProxies: []string{"x"}},
		{TLSCert: "cert.pem"}, // without its key
		{Drain: -time.Second},
	}
	hub, _ := session.New(session.Config{}, nullBus{}, nullBus{}, nil)
	for _, c := range cases {
		if _, err := New(c, hub); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestConfigRanges: every numeric key has a range, and an error names the
// key, the value and the range.
func TestConfigRanges(t *testing.T) {
	hub := newHub(t)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{FrameTimeout: time.Nanosecond}, "gateway.frame_timeout: 1ns is not between 100ms and 5m0s"},
		{Config{FrameTimeout: time.Hour}, "gateway.frame_timeout: 1h0m0s is not between 100ms and 5m0s"},
		{Config{HandshakeTimeout: -time.Second}, "gateway.handshake_timeout: -1s is not between 100ms and 5m0s"},
		{Config{IdleTimeout: 2 * time.Hour}, "gateway.idle_timeout: 2h0m0s is not between 100ms and 1h0m0s"},
		{Config{WriteTimeout: time.Millisecond}, "gateway.write_timeout: 1ms is not between 100ms and 5m0s"},
		{Config{Drain: -time.Second}, "gateway.drain: -1s is not between 0s and 1h0m0s"},
		{Config{Drain: 2 * time.Hour}, "gateway.drain: 2h0m0s is not between 0s and 1h0m0s"},
		{Config{MaxConnections: -1}, "gateway.max_connections: -1 is not between 0 and 16777216"},
		{Config{MaxConnections: 1 << 30}, "gateway.max_connections: 1073741824 is not between 0 and 16777216"},
		{Config{Workers: 2000}, "gateway.workers: 2000 is not between 0 and 1024"},
	} {
		_, err := New(c.cfg, hub)
		if err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg := Config{}
	cfg.setDefaults()
	if cfg.FrameTimeout != 10*time.Second || cfg.HandshakeTimeout != 10*time.Second ||
		cfg.IdleTimeout != 60*time.Second || cfg.MaxConnections != 0 {
		t.Fatalf("defaults: %+v", cfg)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestExtraMetrics: collectors passed in Config.Metrics are served on
// /metrics, and one that clashes is an error of New.
func TestExtraMetrics(t *testing.T) {
	routes := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pushgrid_routes", Help: "Routes."})
	routes.Set(2)
	g, err := New(Config{Metrics: []prometheus.Collector{routes}}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	g.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "pushgrid_routes 2") {
		t.Fatalf("/metrics lacks pushgrid_routes:\n%s", rec.Body)
	}
	if _, err := New(Config{Metrics: []prometheus.Collector{routes, routes}}, newHub(t)); err == nil ||
		!strings.HasPrefix(err.Error(), "gateway.metrics: ") {
		t.Fatalf("a collector registered twice: %v", err)
	}
}

// TestAdminServer: the admin server has the gateway's HTTP timeouts, and
// gives a pprof profile the time it asks for.
func TestAdminServer(t *testing.T) {
	g, err := New(Config{HandshakeTimeout: time.Second, IdleTimeout: 3 * time.Second, WriteTimeout: 2 * time.Second}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := g.AdminServer(AdminHandler(Admin{Hub: g.hub, Nodes: func() any { return nil }}))
	if srv.ReadHeaderTimeout != time.Second || srv.ReadTimeout != 2*time.Second || srv.IdleTimeout != 3*time.Second {
		t.Fatalf("admin server timeouts: %+v", srv)
	}
	rec := httptest.NewRecorder()
	srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/api/stats", nil))
	if rec.Code != 200 {
		t.Fatalf("/api/stats through the admin server: %d", rec.Code)
	}
}

// TestHandOverServesAcceptedHandshakes: a connection the gateway accepted
// before HandOver, whose upgrade request arrives after, is upgraded, not
// refused: in an in-place restart its client did nothing wrong (the CI run
// that found this counted one failed connect in 486). After StopAccepting
// the same late handshake is answered 503, and both close the listener.
func TestHandOverServesAcceptedHandshakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*Gateway, context.Context)
		want int
	}{
		{"HandOver", (*Gateway).HandOver, http.StatusSwitchingProtocols},
		{"StopAccepting", (*Gateway).StopAccepting, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGatewayWith(t, Config{}, session.Config{})
			addr := g.Addr().String()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The request's first line goes out now and the rest after the
			// stop: its handshake is under way when the listener closes.
			br := bufio.NewReader(conn)
			first, rest, _ := strings.Cut(upgradeRequest, "\r\n")
			if _, err := io.WriteString(conn, first+"\r\n"); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); g.open.Load() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the connection was never accepted")
				}
			}
			tc.stop(g, context.Background())
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatal("the listener still accepts")
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, rest); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("late handshake: %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

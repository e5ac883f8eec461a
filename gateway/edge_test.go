package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/internal/testcert"
	"github.com/pushgrid/pushgrid/session"
)

// What package socketio declares it needs of the edge (socketio.Edge),
// repeated here so that the gateway is checked against it whether or not
// socketio builds.
var _ interface {
	Admit(r *http.Request) (id session.Identity, status int, err error)
	AllowedOrigin(r *http.Request) bool
	ClientIP(r *http.Request) netip.Addr
	Upgrade(w http.ResponseWriter, r *http.Request, first []byte, in func(data []byte), closed func(error)) (session.Transport, error)
} = (*Gateway)(nil)

// edgeRequest is an httptest request for target (Host example.com) with
// an Origin, if not empty.
func edgeRequest(target, origin string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

// TestAdmit: Admit refuses as a /ws upgrade is refused, with the status
// and the client's message, and names the user from the query.
func TestAdmit(t *testing.T) {
	g := newGatewayWith(t, Config{Origins: []string{"https://app.example.com"}}, session.Config{})
	if _, status, err := g.Admit(edgeRequest("/socket.io/?user=alice", "")); status != http.StatusServiceUnavailable || err == nil {
		t.Fatalf("before Start: %d %v, want 503", status, err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, target, origin string
		status               int
		user, err            string
	}{
		{"user", "/socket.io/?EIO=4&user=alice", "", 200, "alice", ""},
		{"anonymous", "/socket.io/?EIO=4", "", 200, "", ""},
		{"own host", "/socket.io/?user=alice", "http://example.com", 200, "alice", ""},
		{"allowed origin", "/socket.io/?user=alice", "https://app.example.com", 200, "alice", ""},
		{"foreign origin", "/socket.io/?user=alice", "https://evil.example.org", 403, "", "origin not allowed"},
		{"bad user", "/socket.io/?user=bad%20name", "", 400, "", `invalid user name "bad name"`},
		{"server's name", "/socket.io/?user=anon-1", "", 400, "", `user "anon-1": names starting with anon- are the server's`},
		{"bad escape", "/socket.io/?user=%zz", "", 400, "", "the user parameter is not a valid query value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, status, err := g.Admit(edgeRequest(c.target, c.origin))
			errText := ""
			if err != nil {
				errText = err.Error()
			}
			if status != c.status || errText != c.err || id.User != c.user || id.Verified {
				t.Fatalf("Admit = %+v, %d, %q; want user %q, %d, %q", id, status, errText, c.user, c.status, c.err)
			}
		})
	}
}

// TestAdmitAuthorize: with an Authorize hook, its identity is the one
// admitted (verified, whatever the query says), and its refusals keep
// their status; an error that is no *HTTPError is a 403.
func TestAdmitAuthorize(t *testing.T) {
	exp := time.Unix(2_000_000_000, 0)
	var remote netip.Addr
	g := startGatewayWith(t, Config{Authorize: func(r *http.Request, ip netip.Addr) (session.Identity, error) {
		remote = ip
		switch r.URL.Query().Get("token") {
		case "good":
			return session.Identity{User: "bob", Expires: exp}, nil
		case "expired":
			return session.Identity{}, &HTTPError{http.StatusUnauthorized, "invalid token: token is expired"}
		}
		return session.Identity{}, errors.New("no token")
	}}, session.Config{})
	id, status, err := g.Admit(edgeRequest("/socket.io/?token=good&user=alice", ""))
	if err != nil || status != 200 || id.User != "bob" || !id.Verified || !id.Expires.Equal(exp) {
		t.Fatalf("Admit = %+v, %d, %v; want bob, verified, with the hook's expiry", id, status, err)
	}
	if want := netip.MustParseAddr("192.0.2.1"); remote != want {
		t.Fatalf("the hook was given %v, want %v", remote, want)
	}
	for token, want := range map[string]struct {
		status int
		err    string
	}{
		"expired": {401, "invalid token: token is expired"},
		"":        {403, "no token"},
	} {
		_, status, err := g.Admit(edgeRequest("/socket.io/?token="+token, ""))
		if status != want.status || err == nil || err.Error() != want.err {
			t.Errorf("token %q: %d %v, want %d %q", token, status, err, want.status, want.err)
		}
	}
}

func TestAllowedOrigin(t *testing.T) {
	g := newGatewayWith(t, Config{Origins: []string{"https://*.example.com"}}, session.Config{})
	for origin, want := range map[string]bool{
		"":                        true, // not a browser
		"http://example.com":      true, // the gateway's own host
		"https://app.example.com": true,
		"https://example.org":     false,
		"http://app.example.com":  false, // another scheme
		"null":                    false,
	} {
		if got := g.AllowedOrigin(edgeRequest("/socket.io/", origin)); got != want {
			t.Errorf("Origin %q: %v, want %v", origin, got, want)
		}
	}
}

func TestClientIP(t *testing.T) {
	g := newGatewayWith(t, Config{TrustedProxies: []string{"192.0.2.0/24"}}, session.Config{})
	r := edgeRequest("/socket.io/", "")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	if got := g.ClientIP(r); got != netip.MustParseAddr("203.0.113.7") {
		t.Fatalf("through a trusted proxy: %v", got)
	}
	r.RemoteAddr = "198.51.100.1:4000"
	if got := g.ClientIP(r); got != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("from an untrusted peer: %v", got)
	}
}

// TestMount: a mounted handler serves its requests, whatever the method,
// and the gateway's own routes still serve theirs; a pattern that would
// take one of those, that conflicts with a mount, that names a host or
// comes after Start is refused.
func TestMount(t *testing.T) {
	g := newGatewayWith(t, Config{}, session.Config{})
	sio := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "sio "+r.Method)
	})
	if err := g.Mount("/socket.io/", sio); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{
		"/ws", "GET /ws", "/ws/", "GET /healthz", "/readyz", "/metrics/", "/", "GET /{$}", "/{name}", "/{rest...}",
		"/socket.io/",           // mounted already
		"example.com/socket.io", // a host
		"GET",                   // no path
	} {
		if err := g.Mount(pattern, sio); err == nil {
			t.Errorf("Mount(%q) accepted", pattern)
		}
	}
	if err := g.Mount("/hook/", nil); err == nil {
		t.Error("a nil handler accepted")
	}
	if err := g.Mount("POST /hook/", sio); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Mount("/later/", sio); err == nil || !strings.Contains(err.Error(), "started") {
		t.Errorf("Mount after Start: %v", err)
	}
	base := "http://" + g.Addr().String()
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/socket.io/?EIO=4&transport=polling", 200, "sio GET"},
		{"POST", "/socket.io/?EIO=4&transport=polling", 200, "sio POST"},
		{"OPTIONS", "/socket.io/", 200, "sio OPTIONS"},
		{"POST", "/hook/x", 200, "sio POST"},
		{"GET", "/hook/x", 404, ""},
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/readyz", 200, "ready\n"},
		{"GET", "/nope", 404, ""},
		{"GET", "/", 200, ""}, // the demo page
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.status || (c.body != "" && string(b) != c.body) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.StatusCode, b, c.status, c.body)
		}
	}
}

// edgeServer is a handler mounted on /socket.io/ that admits its requests
// and upgrades them through Upgrade, as package socketio does, and hands
// over what comes of it.
type edgeServer struct {
	g          *Gateway
	transports chan session.Transport
	in         chan string // what in was given, copied
	closed     chan error
	closes     atomic.Int32
}

// ServeHTTP upgrades. The message "close me" closes the transport from
// in, on the read goroutine, as a server does on a bad message.
func (s *edgeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, status, err := s.g.Admit(r); err != nil {
		writeJSONError(w, status, err.Error())
		return
	}
	upgraded := make(chan struct{})
	var t session.Transport
	t, err := s.g.Upgrade(w, r, nil,
		func(data []byte) {
			<-upgraded
			if string(data) == "close me" {
				_ = t.Close(session.Disconnect{Code: 4000, Reason: "closed from in"})
			}
			s.in <- string(data)
		},
		func(err error) { s.closes.Add(1); s.closed <- err })
	if err == nil {
		close(upgraded)
		s.transports <- t
	}
}

// startEdge starts a gateway (see startGatewayWith) with an edgeServer
// mounted.
func startEdge(tb testing.TB, cfg Config, scfg session.Config) (*Gateway, *edgeServer) {
	tb.Helper()
	g := newGatewayWith(tb, cfg, scfg)
	s := &edgeServer{g: g, transports: make(chan session.Transport, 16), in: make(chan string, 1024), closed: make(chan error, 16)}
	if err := g.Mount("/socket.io/", s); err != nil {
		tb.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return g, s
}

// recv takes the next value from ch, or fails the test after 5 s.
func recv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		tb.Fatalf("no %s within 5s", what)
	}
	var zero T
	return zero
}

// textClient is a gws client that hands over its messages, pongs and close
// code.
type textClient struct {
	msgs   chan string
	pongs  chan string
	closed chan uint16 // the server's close code; 0 for none
}

func (c *textClient) OnOpen(*gws.Conn)                      {}
func (c *textClient) OnPing(*gws.Conn, []byte)              {}
func (c *textClient) OnPong(_ *gws.Conn, p []byte)          { c.pongs <- string(p) }
func (c *textClient) OnMessage(_ *gws.Conn, m *gws.Message) { c.msgs <- m.Data.String(); m.Close() }
func (c *textClient) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	code := uint16(0)
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.closed <- code
}

// dialEdge connects a gws client to the edgeServer at scheme://g/socket.io/.
func dialEdge(tb testing.TB, g *Gateway, scheme string, tc *tls.Config) (*gws.Conn, *textClient) {
	tb.Helper()
	c := &textClient{msgs: make(chan string, 1024), pongs: make(chan string, 16), closed: make(chan uint16, 1)}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{
		Addr:      scheme + "://" + g.Addr().String() + "/socket.io/?EIO=4&transport=websocket&user=alice",
		TlsConfig: tc,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.NetConn().Close() })
	go conn.ReadLoop()
	return conn, c
}

// serverText is an unmasked text frame of s, shorter than 126 bytes.
func serverText(s string) []byte { return append([]byte{0x81, byte(len(s))}, s...) }

// exchange checks that 100 messages from conn reach in, in order, and
// that frames written through t reach c, a pong among them.
func exchange(t *testing.T, s *edgeServer, tr session.Transport, conn *gws.Conn, c *textClient) {
	t.Helper()
	const n = 100
	for i := 0; i < n; i++ {
		if err := conn.WriteString(fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if got, want := recv(t, s.in, "message"), fmt.Sprintf("m%d", i); got != want {
			t.Fatalf("in got %q, want %q", got, want)
		}
	}
	if k, err := tr.TryWrite(serverText("a")); err != nil || (k != 0 && k != 3) {
		t.Fatalf("TryWrite = %d, %v", k, err)
	} else if k == 0 { // no raw write (TLS): the writer's job
		if err := tr.Write([][]byte{serverText("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Write([][]byte{serverText("b"), serverText("c")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b", "c"} {
		if got := recv(t, c.msgs, "frame"); got != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
	}
	if err := conn.WritePing([]byte("p1")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c.pongs, "pong"); got != "p1" {
		t.Fatalf("pong %q", got)
	}
}

// TestUpgrade: through a mounted handler, a client's text messages reach
// in in order, frames written through the transport and the pong to its
// ping reach it; when it closes, closed is called once, the socket is
// closed and the transport refuses writes.
func TestUpgrade(t *testing.T) {
	g, s := startEdge(t, Config{}, session.Config{})
	conn, c := dialEdge(t, g, "ws", nil)
	tr := recv(t, s.transports, "transport")
	exchange(t, s, tr, conn, c)
	if err := conn.WriteClose(1000, nil); err != nil {
		t.Fatal(err)
	}
	recv(t, s.closed, "closed")
	waitFor(t, 5*time.Second, "the socket is closed", func() bool { return g.sockets() == 0 })
	if err := tr.Write([][]byte{serverText("late")}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after the close: %v", err)
	}
	if err := tr.Close(session.DisconnectGoingAway); err != nil {
		t.Fatalf("Close after the client's close: %v", err)
	}
	if n := s.closes.Load(); n != 1 {
		t.Fatalf("closed called %d times", n)
	}
}

// TestUpgradeTLS: the same over TLS, where the transport has no raw
// writes and reads through the TLS connection.
func TestUpgradeTLS(t *testing.T) {
	certs := testcert.New(t)
	g, s := startEdge(t, Config{TLSCert: certs.Cert, TLSKey: certs.Key}, session.Config{})
	conn, c := dialEdge(t, g, "wss", certs.ClientConfig())
	tr := recv(t, s.transports, "transport")
	exchange(t, s, tr, conn, c)
	if err := tr.Close(session.Disconnect{Code: 4002, Reason: "disconnected"}); err != nil {
		t.Fatal(err)
	}
	if code := recv(t, c.closed, "close"); code != 4002 {
		t.Fatalf("closed with %d, want 4002", code)
	}
	recv(t, s.closed, "closed")
	waitFor(t, 5*time.Second, "the socket is closed", func() bool { return g.sockets() == 0 })
}

// edgeUpgradeRequest is upgradeRequest for /socket.io/: net/http serves
// it, as every request but GET /ws.
var edgeUpgradeRequest = strings.Replace(upgradeRequest, "GET /ws?", "GET /socket.io/?EIO=4&transport=websocket&", 1)

// TestUpgradeCloses: an upgraded socket is held to the bounds of /ws
// sockets, and closed is called once for each close.
func TestUpgradeCloses(t *testing.T) {
	for _, c := range []struct {
		name   string
		send   []byte
		code   uint16
		reason string
	}{
		// Frames after the close frame went out are discarded.
		{"binary", append(clientFrame(2, []byte("x")), clientFrame(1, []byte("after"))...), 1003, "binary frames are not supported"},
		{"frame timeout", clientFrame(1, []byte("0123456789"))[:9], 1008, "frame timeout"},
		{"too large", frameHeader(0x81, 1025), 1009, ""},
		{"not UTF-8", clientFrame(1, []byte{0xff}), 1007, ""},
		{"closed from in", append(clientFrame(1, []byte("close me")), clientFrame(1, []byte("after"))...), 4000, "closed from in"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, s := startEdge(t, Config{FrameTimeout: 200 * time.Millisecond}, session.Config{MaxMessageBytes: 1024})
			conn, br := rawRequest(t, g, edgeUpgradeRequest)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			ws := &wsClient{conn: conn, br: br}
			ws.write(t, append(clientFrame(1, []byte("first")), c.send...))
			if got := recv(t, s.in, "message"); got != "first" {
				t.Fatalf("in got %q", got)
			}
			code, reason := ws.readClose(t, 5*time.Second)
			if code != c.code || (c.reason != "" && reason != c.reason) {
				t.Fatalf("close %d %q, want %d %q", code, reason, c.code, c.reason)
			}
			_ = conn.Close()
			recv(t, s.closed, "closed")
			waitFor(t, 5*time.Second, "the socket is closed", func() bool { return g.sockets() == 0 })
			if c.name == "closed from in" && recv(t, s.in, "message") != "close me" {
				t.Fatal(`"close me" did not reach in`)
			}
			if n := s.closes.Load(); n != 1 || len(s.in) != 0 {
				t.Fatalf("closed called %d times; %d messages after the first", n, len(s.in))
			}
		})
	}
}

// TestUpgradeMaxConnections: an upgraded socket counts against
// MaxConnections until it is closed.
func TestUpgradeMaxConnections(t *testing.T) {
	g, s := startEdge(t, Config{MaxConnections: 1}, session.Config{})
	conn, _ := dialEdge(t, g, "ws", nil)
	tr := recv(t, s.transports, "transport")
	over, br := rawRequest(t, g, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusServiceUnavailable || body.Error != "server full" {
		t.Fatalf("one over the limit: %d %+v %v, want 503 server full", resp.StatusCode, body, err)
	}
	_ = over.Close()
	_ = tr.Close(session.DisconnectGoingAway)
	_ = conn.WriteClose(1000, nil)
	waitFor(t, 5*time.Second, "the socket is closed", func() bool { return g.sockets() == 0 })
	dialEdge(t, g, "ws", nil)
	recv(t, s.transports, "transport once the first closed")
}

// TestShutdownWaitsForUpgraded: Shutdown waits for an upgraded socket
// until its owner closes it.
func TestShutdownWaitsForUpgraded(t *testing.T) {
	g, s := startEdge(t, Config{}, session.Config{})
	_, c := dialEdge(t, g, "ws", nil)
	tr := recv(t, s.transports, "transport")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := g.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 client sockets still open") {
		t.Fatalf("Shutdown with an upgraded socket open: %v", err)
	}
	if err := tr.Close(session.DisconnectGoingAway); err != nil {
		t.Fatal(err)
	}
	if code := recv(t, c.closed, "close"); code != 1001 {
		t.Fatalf("closed with %d, want 1001", code)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, s.closed, "closed")
}

// scrape returns the value of the series line (name and labels) on
// g's /metrics, or -1 if it is not there.
func scrape(tb testing.TB, g *Gateway, series string) float64 {
	tb.Helper()
	rec := httptest.NewRecorder()
	g.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		tb.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				tb.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// TestConnectionsByTransport: pushgrid_connections stays the hub's total,
// and the same family breaks it down by transport: ws for /ws, and what
// mounted handlers count; an upgraded socket is not a ws connection.
func TestConnectionsByTransport(t *testing.T) {
	g, s := startEdge(t, Config{}, session.Config{})
	ws := dialWS(t, g, nil)
	ws.handshake(t)
	dialEdge(t, g, "ws", nil)
	recv(t, s.transports, "transport")
	g.CountConnections("sio-websocket", 2)
	g.CountConnections("sio-websocket", -1)
	g.CountConnections("sio-polling", 0)
	for series, want := range map[string]float64{
		`pushgrid_connections`:                            1,
		`pushgrid_connections{transport="ws"}`:            1,
		`pushgrid_connections{transport="sio-websocket"}`: 1,
		`pushgrid_connections{transport="sio-polling"}`:   0,
	} {
		if got := scrape(t, g, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	_ = ws.conn.Close()
	waitFor(t, 5*time.Second, "the ws connection is no longer counted", func() bool {
		return scrape(t, g, `pushgrid_connections{transport="ws"}`) == 0
	})
	for _, transport := range []string{"ws", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("CountConnections(%q) did not panic", transport)
				}
			}()
			g.CountConnections(transport, 1)
		}()
	}
}

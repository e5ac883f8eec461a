package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/internal/testcert"
	"github.com/pushgrid/pushgrid/session"
)

// lightEdge is an edgeServer mounted both ways, as package socketio is:
// with Mount for everything under /socket.io/, and with MountUpgrades for
// its WebSocket requests. paths says, for each request, whether it came
// by the light path.
type lightEdge struct {
	*edgeServer
	paths chan bool
}

func (s *lightEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, light := w.(*lightResponse)
	s.paths <- light
	if r.URL.Query().Get("answer") == "teapot" {
		w.Header().Set("X-Answer", "tea")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout\n")
		return
	}
	s.edgeServer.ServeHTTP(w, r)
}

// takesWebSocket is what socketio.Server.TakesUpgrade does: the path, and
// transport=websocket in the query.
func takesWebSocket(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	return path == "/socket.io/" && strings.Contains("&"+query+"&", "&transport=websocket&")
}

func startLightEdge(tb testing.TB, cfg Config) (*Gateway, *lightEdge) {
	tb.Helper()
	g := newGatewayWith(tb, cfg, session.Config{})
	s := &lightEdge{
		edgeServer: &edgeServer{g: g, transports: make(chan session.Transport, 16), in: make(chan string, 1024), closed: make(chan error, 16)},
		paths:      make(chan bool, 16),
	}
	if err := g.Mount("/socket.io/", s); err != nil {
		tb.Fatal(err)
	}
	if err := g.MountUpgrades(takesWebSocket, s); err != nil {
		tb.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := g.MountUpgrades(takesWebSocket, s); err == nil {
		tb.Fatal("MountUpgrades after Start: no error")
	}
	return g, s
}

// TestLightRouteUpgrade: a WebSocket request a light route takes is
// upgraded without net/http, plain and over TLS, and the socket works as
// one upgraded through net/http does.
func TestLightRouteUpgrade(t *testing.T) {
	certs := testcert.New(t)
	for _, c := range []struct {
		name   string
		cfg    Config
		scheme string
	}{
		{"ws", Config{}, "ws"},
		{"wss", Config{TLSCert: certs.Cert, TLSKey: certs.Key}, "wss"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, s := startLightEdge(t, c.cfg)
			tc := certs.ClientConfig()
			if c.scheme == "ws" {
				tc = nil
			}
			conn, cl := dialEdge(t, g, c.scheme, tc)
			if !recv(t, s.paths, "request") {
				t.Fatal("the upgrade went through net/http")
			}
			tr := recv(t, s.transports, "transport")
			exchange(t, s.edgeServer, tr, conn, cl)
			if err := conn.WriteClose(1000, nil); err != nil {
				t.Fatal(err)
			}
			recv(t, s.closed, "closed")
			waitFor(t, 5*time.Second, "the socket is closed", func() bool { return g.sockets() == 0 })
		})
	}
}

// sendRequest writes parts, one after another, on a new connection to g and reads the answer.
func sendRequest(t *testing.T, g *Gateway, parts ...string) (*http.Response, string, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for i, p := range parts {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // the request line arrives in pieces
		}
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body), conn
}

// TestLightRouteAnswers: an answer other than an upgrade, on the light
// path, goes out whole with the handler's status, headers and body, and
// the connection closes; so does a refusal of the handler's upgrade.
func TestLightRouteAnswers(t *testing.T) {
	g, s := startLightEdge(t, Config{Origins: []string{"https://app.example.com"}})
	resp, body, conn := sendRequest(t, g, "GET /socket.io/?transport=websocket&answer=teapot HTTP/1.1\r\nHost: x\r\n\r\n")
	if !recv(t, s.paths, "request") {
		t.Fatal("went through net/http")
	}
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Answer") != "tea" || body != "short and stout\n" ||
		resp.ContentLength != int64(len(body)) || !resp.Close {
		t.Fatalf("answer %d %v %q (length %d, close %v)", resp.StatusCode, resp.Header, body, resp.ContentLength, resp.Close)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("after the answer the connection reads %d, %v; want it closed", n, err)
	}

	// Admit refuses a page of another origin: the edge answers 403.
	resp, body, _ = sendRequest(t, g, strings.Replace(edgeUpgradeRequest, "\r\n\r\n", "\r\nOrigin: https://evil.example.com\r\n\r\n", 1))
	if !recv(t, s.paths, "request") {
		t.Fatal("went through net/http")
	}
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "origin") || !resp.Close {
		t.Fatalf("refusal %d %q (close %v)", resp.StatusCode, body, resp.Close)
	}
	waitFor(t, 5*time.Second, "the connections are closed", func() bool { return g.sockets() == 0 })
}

// TestLightRouteOthers: what the light routes do not take goes to
// net/http as before, with keep-alive: other transports, other paths, and
// a request line longer than the light path's reader. A request line that
// arrives in pieces is still taken.
func TestLightRouteOthers(t *testing.T) {
	g, s := startLightEdge(t, Config{})
	resp, body, _ := sendRequest(t, g, "GET /socket.io/?transport=polling&answer=teapot HTTP/1.1\r\nHost: x\r\n\r\n")
	if recv(t, s.paths, "request") {
		t.Fatal("a polling request went by the light path")
	}
	if resp.StatusCode != http.StatusTeapot || body != "short and stout\n" || resp.Close {
		t.Fatalf("net/http's answer %d %q (close %v)", resp.StatusCode, body, resp.Close)
	}

	long := "GET /socket.io/?transport=websocket&answer=teapot&pad=" + strings.Repeat("x", 2*readBufferSize) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	resp, _, _ = sendRequest(t, g, long)
	if recv(t, s.paths, "request") {
		t.Fatal("a request line longer than the reader went by the light path")
	}
	if resp.StatusCode != http.StatusTeapot || resp.Close {
		t.Fatalf("net/http's answer %d (close %v)", resp.StatusCode, resp.Close)
	}

	resp, _, _ = sendRequest(t, g, "GET /socket.io/?transport=web", "socket&answer=teapot HTTP/1.1\r\nHost: x\r\n\r\n")
	if !recv(t, s.paths, "request") {
		t.Fatal("a request line in pieces went through net/http")
	}
	if resp.StatusCode != http.StatusTeapot || !resp.Close {
		t.Fatalf("light answer %d (close %v)", resp.StatusCode, resp.Close)
	}
}

// TestPeekLine: the request line, without consuming it; what a full
// reader holds; and an error for a line cut short.
func TestPeekLine(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\n", false},
		{strings.Repeat("a", 40), strings.Repeat("a", 16), false}, // the reader holds 16
		{"GET /", "GET /", true},
	} {
		br := bufio.NewReaderSize(strings.NewReader(c.in), 16)
		got, err := peekLine(br)
		if string(got) != c.want || (err != nil) != c.err {
			t.Errorf("%q: %q, %v; want %q (error %v)", c.in, got, err, c.want, c.err)
		}
		if rest, _ := io.ReadAll(br); !strings.HasPrefix(c.in, string(rest)) || len(rest) != len(c.in) {
			t.Errorf("%q: peekLine consumed input", c.in)
		}
	}
}

package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// TestIdleTimeout: a keep-alive connection left idle after a request is
// closed once IdleTimeout passes.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	g := startGatewayWith(t, Config{IdleTimeout: idle}, session.Config{})
	conn, br := rawRequest(t, g, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	start := time.Now()
	expectEnd(t, conn, br, 5*time.Second)
	if d := time.Since(start); d < idle/2 {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

// TestHandshakeTimeout: a request head that never ends is dropped once
// HandshakeTimeout passes, on the light /ws path and through net/http.
func TestHandshakeTimeout(t *testing.T) {
	const hs = 300 * time.Millisecond
	g := startGatewayWith(t, Config{HandshakeTimeout: hs}, session.Config{})
	for _, head := range []string{
		"GET /ws?user=alice HTTP/1.1\r\nHost: x\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n",
		"GE",
		"",
	} {
		t.Run(head, func(t *testing.T) {
			conn, br := rawRequest(t, g, head)
			start := time.Now()
			got := expectEnd(t, conn, br, 5*time.Second)
			if d := time.Since(start); d < hs/2 {
				t.Fatalf("closed after %v, before the handshake timeout", d)
			}
			if strings.HasPrefix(head, "GET /ws") && !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
				t.Fatalf("the light path answered %q, want a 408", got)
			}
		})
	}
}

// TestBodyTimeout: a request that announces a body and never sends it is
// dropped once twice HandshakeTimeout has passed since it began.
func TestBodyTimeout(t *testing.T) {
	const hs = 300 * time.Millisecond
	g := startGatewayWith(t, Config{HandshakeTimeout: hs}, session.Config{})
	conn, br := rawRequest(t, g, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome")
	expectEnd(t, conn, br, 5*time.Second) // net/http answers only once it gave up on the body
}

// TestUpgradeThroughHTTPOutlivesDeadlines: a WebSocket upgraded by
// net/http (after another request) keeps working after the HTTP read and
// write timeouts of its request would have passed.
func TestUpgradeThroughHTTPOutlivesDeadlines(t *testing.T) {
	g := startGatewayWith(t, Config{HandshakeTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		IdleTimeout: 300 * time.Millisecond}, session.Config{})
	c := dialWSAfter(t, g, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", nil)
	c.handshake(t)
	time.Sleep(time.Second) // all of them passed
	c.write(t, pingFrames(1))
	c.readText(t, `"type":"pong"`)
}

// TestMaxConnections: at MaxConnections open connections a new one gets
// 503 {"error":"server full"} at once; once one closes, a new one is
// served.
func TestMaxConnections(t *testing.T) {
	g := startGatewayWith(t, Config{MaxConnections: 3}, session.Config{})
	if g.MaxConnections() != 3 {
		t.Fatalf("MaxConnections() = %d", g.MaxConnections())
	}
	var open []*wsClient
	for i := 0; i < 3; i++ {
		c := dialWS(t, g, nil)
		c.handshake(t)
		open = append(open, c)
	}
	for _, req := range []string{upgradeRequest, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ""} {
		conn, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, req)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: no answer: %v", req, err)
		}
		var body struct{ Error string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
			body.Error != "server full" {
			t.Fatalf("%q: %d %+v %v, want 503 server full", req, resp.StatusCode, body, err)
		}
		_ = conn.Close()
	}
	_ = open[0].conn.Close()
	waitFor(t, 5*time.Second, "a fourth WebSocket is served", func() bool {
		c := dialWS(t, g, nil)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			_ = c.conn.Close()
			return false
		}
		c.readText(t, `"type":"welcome"`)
		return true
	})
}

func TestMaxConnectionsFor(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		want  int
	}{
		{0, 1},
		{64, 1},
		{100, 36},
		{1024, 922},
		{10240, 9216},
		{20000, 18976},
		{1 << 20, 1<<20 - 1024},
		{1 << 62, maxMaxConnections},
	} {
		if got := MaxConnectionsFor(c.limit); got != c.want {
			t.Errorf("MaxConnectionsFor(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	// The default follows the process's limit.
	g, err := New(Config{}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := g.MaxConnections(); n != MaxConnectionsFor(openFileLimit()) || n < 1 {
		t.Fatalf("default MaxConnections %d, open-file limit %d", n, openFileLimit())
	}
}

func newHub(tb testing.TB) *session.Hub {
	tb.Helper()
	hub, err := session.New(session.Config{Node: "g1"}, nullBus{}, nullBus{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return hub
}

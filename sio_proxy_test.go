package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// namedBackend is a plain HTTP server that says who it is: every request
// is answered with its name, the body's transfer encoding, length and
// SHA-256; /ws is a WebSocket echo that prefixes its name; /hold answers
// nothing and reports on held and cancelled.
type namedBackend struct {
	name      string
	srv       *httptest.Server
	held      chan struct{}
	cancelled chan struct{}
}

func startNamedBackends(t *testing.T, n int) []*namedBackend {
	t.Helper()
	var bs []*namedBackend
	for i := range n {
		b := &namedBackend{name: fmt.Sprintf("b%d", i), held: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
		up := gws.NewUpgrader(&echoServer{name: b.name}, &gws.ServerOption{})
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			size, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			te := strings.Join(r.TransferEncoding, ",")
			if te == "" {
				te = "identity"
			}
			fmt.Fprintf(w, "%s %s %d %x", b.name, te, size, h.Sum(nil))
		})
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			conn, err := up.Upgrade(w, r)
			if err != nil {
				return
			}
			go conn.ReadLoop()
		})
		mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
			b.held <- struct{}{}
			<-r.Context().Done()
			b.cancelled <- struct{}{}
		})
		b.srv = httptest.NewServer(mux)
		t.Cleanup(b.srv.Close)
		bs = append(bs, b)
	}
	return bs
}

func addrs(bs []*namedBackend) []string {
	var a []string
	for _, b := range bs {
		a = append(a, b.srv.Listener.Addr().String())
	}
	return a
}

type echoServer struct {
	gws.BuiltinEventHandler
	name string
}

func (e *echoServer) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = c.WriteString(e.name + ":" + m.Data.String())
}

// echoClient hands the messages a gws client gets to the test.
type echoClient struct {
	gws.BuiltinEventHandler
	got chan string
}

func (e *echoClient) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	e.got <- m.Data.String()
}

// TestRRProxyRoundRobin: the requests of one keep-alive client connection
// go to each backend in turn, with their bodies intact, whatever the body's
// framing.
func TestRRProxyRoundRobin(t *testing.T) {
	p := startRRProxy(t, addrs(startNamedBackends(t, 3))...)
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	big := make([]byte, 3<<20)
	_, _ = rand.Read(big)
	cases := []struct {
		name    string
		method  string
		body    []byte
		chunked bool
	}{
		{"get", http.MethodGet, nil, false},
		{"post", http.MethodPost, []byte(`4{"type":"join","channel":"ops"}`), false},
		{"chunked post", http.MethodPost, []byte("some\x1erecords\x1eapart"), true},
		{"empty post", http.MethodPost, []byte{}, false},
		{"large post", http.MethodPost, big, false},
		{"large chunked post", http.MethodPost, big, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, "http://"+p.addr()+"/socket.io/?EIO=4&transport=polling", body)
			if err != nil {
				t.Fatal(err)
			}
			te := "identity"
			if tc.chunked {
				// A reader of unknown length is what makes the client chunk.
				req.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(tc.body)})
				req.ContentLength = -1
				te = "chunked"
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("b%d %s %d %x", i%3, te, len(tc.body), sha256.Sum256(tc.body))
			if string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client dialled the proxy %d times, want 1 keep-alive connection", n)
	}
	if got := fmt.Sprint(p.counts()); got != "[2 2 2]" {
		t.Errorf("requests per backend %s, want [2 2 2]", got)
	}
}

// TestRRProxyWebSocket: an upgrade takes its turn like any request, then
// stays on its backend for the connection's life.
func TestRRProxyWebSocket(t *testing.T) {
	p := startRRProxy(t, addrs(startNamedBackends(t, 3))...)
	get := func(want string) {
		t.Helper()
		code, body := httpGet(t, "http://"+p.addr()+"/")
		if code != http.StatusOK || !strings.HasPrefix(body, want+" ") {
			t.Fatalf("GET: %d %q, want from %s", code, body, want)
		}
	}
	echo := func(want string) {
		t.Helper()
		h := &echoClient{got: make(chan string, 4)}
		conn, _, err := gws.NewClient(h, &gws.ClientOption{Addr: "ws://" + p.addr() + "/ws"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.WriteClose(1000, nil) })
		go conn.ReadLoop()
		for i := range 3 {
			msg := fmt.Sprint("m", i)
			if err := conn.WriteString(msg); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-h.got:
				if got != want+":"+msg {
					t.Fatalf("echo %q, want %q", got, want+":"+msg)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no echo of %s", msg)
			}
		}
	}
	get("b0")
	echo("b1")
	get("b2")
	echo("b0")
}

// TestRRProxyClientCancel: a client that hangs up on a pending request
// cancels it at the backend, as it would without the proxy.
func TestRRProxyClientCancel(t *testing.T) {
	bs := startNamedBackends(t, 3)
	p := startRRProxy(t, addrs(bs)...)
	conn := rawConn(t, p.addr(), "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-bs[0].held:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach b0")
	}
	_ = conn.Close()
	select {
	case <-bs[0].cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("b0 did not see the request cancelled")
	}
}

// TestRRProxyDeadBackend: a backend that refuses connections is passed over.
func TestRRProxyDeadBackend(t *testing.T) {
	bs := startNamedBackends(t, 3)
	p := startRRProxy(t, addrs(bs)...)
	bs[1].srv.Close()
	for i, want := range []string{"b0", "b2", "b2", "b0"} {
		code, body := httpGet(t, "http://"+p.addr()+"/")
		if code != http.StatusOK || !strings.HasPrefix(body, want+" ") {
			t.Fatalf("request %d: %d %q, want from %s", i, code, body, want)
		}
	}
	if got := fmt.Sprint(p.counts()); got != "[2 0 2]" {
		t.Errorf("requests per backend %s, want [2 0 2]", got)
	}
}

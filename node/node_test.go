package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// tagger stamps the node's name on every chat it relays and counts the
// connections it has seen leave.
type tagger struct {
	session.NopHandler
	name string
	mu   sync.Mutex
	left int
}

func (h *tagger) OnMessage(c *session.Conn, f *session.Frame) error {
	if f.Type == "whoami" {
		c.Send([]byte(`{"type":"iam","node":"` + h.name + `","user":"` + c.User() + `"}`))
		return session.ErrHandled
	}
	return nil
}

func (h *tagger) OnDisconnect(*session.Conn, error) {
	h.mu.Lock()
	h.left++
	h.mu.Unlock()
}

// testConfig is a node's configuration on ephemeral loopback ports.
func testConfig(t testing.TB, name string, seeds ...string) node.Config {
	cfg := node.DefaultConfig()
	cfg.Node = name
	cfg.History.Dir = t.TempDir()
	cfg.Gateway.Listen, cfg.Gateway.Workers, cfg.Gateway.Drain = "127.0.0.1:0", 1, 100*time.Millisecond
	cfg.NATS.Listen, cfg.NATS.ClusterListen, cfg.NATS.Seeds = "127.0.0.1:0", "127.0.0.1:0", seeds
	cfg.NATS.Heartbeat = 200 * time.Millisecond
	cfg.Admin.Listen = "127.0.0.1:0"
	return cfg
}

// TestEmbeddedCluster: a Go program starts three embedded nodes with
// Handlers of its own, their clients talk across nodes and to the
// Handlers, and Shutdown leaves nothing running.
// startNode starts a node of cfg, logging nowhere, shut down when the
// test ends.
func startNode(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.New(cfg, node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

func TestEmbeddedCluster(t *testing.T) {
	base := runtime.NumGoroutine()
	var nodes []*node.Node
	var handlers []*tagger
	for i := 1; i <= 3; i++ {
		var seeds []string
		if i > 1 {
			seeds = []string{nodes[0].ClusterURL()}
		}
		h := &tagger{name: fmt.Sprintf("e%d", i)}
		n, err := node.New(testConfig(t, h.name, seeds...), node.WithHandler(h), node.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		nodes, handlers = append(nodes, n), append(handlers, h)
	}
	waitFor(t, "every node sees three", func() bool {
		for _, n := range nodes {
			if len(n.Broker().Nodes()) != 3 {
				return false
			}
		}
		return true
	})

	var clients []*client
	for i, n := range nodes {
		c := dial(t, n, fmt.Sprintf("u%d", i))
		c.send(`{"type":"whoami"}`)
		if f := c.next("iam"); f["node"] != n.Name() || f["user"] != fmt.Sprintf("u%d", i) {
			t.Fatalf("the handler of %s answered %v", n.Name(), f)
		}
		c.send(`{"type":"join","channel":"room"}`)
		c.next("joined")
		clients = append(clients, c)
	}
	waitFor(t, "the channel's interest reaches every node", func() bool {
		for _, n := range nodes {
			if n.Broker().Server().GlobalAccount().Interest("push.chan.room") < 3 {
				return false
			}
		}
		return true
	})
	clients[0].send(`{"type":"chat","channel":"room","msg":"across"}`)
	for _, c := range clients {
		if f := c.next("chat"); f["msg"] != "across" || f["user"] != "u0" {
			t.Fatalf("got %v", f)
		}
	}

	// Shutdown in reverse order, the clients still connected: each is
	// closed with 1001 after the drain, its Handler told.
	for i := len(nodes) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := nodes[i].Shutdown(ctx); err != nil {
			t.Fatalf("%s: %v", nodes[i].Name(), err)
		}
		if err := nodes[i].Shutdown(ctx); err != nil {
			t.Fatalf("%s, second Shutdown: %v", nodes[i].Name(), err)
		}
		cancel()
		if code := clients[i].closeCode(); code != 1001 {
			t.Fatalf("client of %s closed with %d, want 1001", nodes[i].Name(), code)
		}
		handlers[i].mu.Lock()
		left := handlers[i].left
		handlers[i].mu.Unlock()
		if left != 1 {
			t.Fatalf("%s's handler saw %d disconnects", nodes[i].Name(), left)
		}
	}
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

// TestConfigChecked: New refuses a configuration that cannot work, naming
// each bad key once, and starts nothing.
func TestConfigChecked(t *testing.T) {
	cfg := testConfig(t, "bad name")
	cfg.Session.Rate = -1
	cfg.Gateway.FrameTimeout = time.Nanosecond
	_, err := node.New(cfg)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, key := range []string{"node:", "session.rate:", "gateway.frame_timeout:"} {
		if strings.Count(msg, key) != 1 {
			t.Errorf("%q said %d times in %q", key, strings.Count(msg, key), msg)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
	}
}

// client is a WebSocket client of a node.
type client struct {
	t      testing.TB
	conn   *gws.Conn
	frames chan map[string]any
	closed chan uint16
}

func dial(t testing.TB, n *node.Node, user string) *client {
	t.Helper()
	c := &client{t: t, frames: make(chan map[string]any, 64), closed: make(chan uint16, 1)}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: "ws://" + n.Addr().String() + "/ws?user=" + user})
	if err != nil {
		t.Fatal(err)
	}
	c.conn = conn
	go conn.ReadLoop()
	c.next("welcome")
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.conn.WriteString(s); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next frame of type typ, skipping others.
func (c *client) next(typ string) map[string]any {
	c.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-c.frames:
			if f["type"] == typ {
				return f
			}
		case <-timeout:
			c.t.Fatalf("no %s frame within 5s", typ)
		}
	}
}

// closeCode waits for the node's close frame and returns its code.
func (c *client) closeCode() uint16 {
	select {
	case code := <-c.closed:
		return code
	case <-time.After(10 * time.Second):
		c.t.Fatal("not closed within 10s")
	}
	return 0
}

func (c *client) OnOpen(*gws.Conn)         {}
func (c *client) OnPing(*gws.Conn, []byte) {}
func (c *client) OnPong(*gws.Conn, []byte) {}
func (c *client) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	code := uint16(0)
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.closed <- code
}

func (c *client) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var f map[string]any
	if json.Unmarshal(m.Bytes(), &f) == nil {
		c.frames <- f
	}
}

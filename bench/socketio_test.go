package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/node"
)

func TestSocketIOURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket"},
		{"wss://push.example.com/ws?user=a#x", "wss://push.example.com/socket.io/?EIO=4&transport=websocket"},
		{"ws://[::1]:8000/", "ws://[::1]:8000/socket.io/?EIO=4&transport=websocket"},
		{"http://127.0.0.1:8000/ws", ""},
		{"ws:///ws", ""},
		{"::", ""},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := socketIOURL(c.in)
			if c.want == "" {
				if err == nil {
					t.Fatalf("%q: %q, want an error", c.in, got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%q: %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}

func TestEventArg(t *testing.T) {
	cases := []struct {
		packet string
		want   string // "" when it is no event with one argument
	}{
		{`2["bench",{"type":"bench","s":1}]`, `{"type":"bench","s":1}`},
		{`2["message","text"]`, `"text"`},
		{`2["a\"b",[1]]`, `[1]`},
		{`2["a\\",[1]]`, `[1]`},
		{`2["ping"]`, ``},
		{`3["bench",{}]`, ``},
		{`21["bench",{}]`, ``},
		{`2/ns,["bench",{}]`, ``},
		{`2["bench",{}`, ``},
		{`2["unterminated]`, ``},
	}
	for _, c := range cases {
		got, ok := eventArg([]byte(c.packet))
		if c.want == "" {
			if ok {
				t.Errorf("%s: %s, want none", c.packet, got)
			}
			continue
		}
		if !ok || string(got) != c.want {
			t.Errorf("%s: %s, %v; want %s", c.packet, got, ok, c.want)
		}
	}
}

const testSecret = "0123456789abcdef0123456789abcdef"

// startNode starts a node on ephemeral ports, its Engine.IO heartbeat
// short enough that a subscriber that did not answer pings would be
// dropped within any run, and returns its /ws and NATS URLs.
func startNode(t testing.TB, edit func(*node.Config)) (ws, nats string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Node = "b1"
	cfg.History.Dir = t.TempDir()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	cfg.Log.Level = "error"
	cfg.SocketIO.PingInterval = 100 * time.Millisecond
	// A timeout that leaves a loaded machine room for a pong's round trip
	// (100 ms did not, under the race detector), and still drops a
	// subscriber that does not answer within a run's first step.
	cfg.SocketIO.PingTimeout = 500 * time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	n, err := node.New(cfg)
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
	return "ws://" + n.Addr().String() + "/ws", n.NATSURL()
}

// TestRunSocketIO runs Socket.IO subscribers against a node, in each way
// they name their user: every message reaches every subscriber, none is
// dropped by the heartbeat, and the welcome names the user the
// credentials name.
func TestRunSocketIO(t *testing.T) {
	cases := []struct {
		name string
		edit func(*node.Config)
		cfg  Config
	}{
		{"user", nil, Config{UserPrefix: "u"}},
		{"anonymous", nil, Config{UserPrefix: ""}},
		{"jwt", func(c *node.Config) { c.Auth.Mode, c.Auth.Secret = "jwt", testSecret }, Config{UserPrefix: "u", AuthSecret: testSecret}},
		{"hook", func(c *node.Config) { c.Auth.Mode = "hook" }, Config{UserPrefix: "u", Hook: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws, nats := startNode(t, c.edit)
			cfg := c.cfg
			cfg.URLs, cfg.NATS, cfg.Proto = []string{ws}, nats, ProtoSocketIO
			cfg.Subs, cfg.Channels, cfg.Rates = 20, 2, []float64{0, 50}
			// Longer than the heartbeat's ping interval and timeout
			// together, several times over.
			cfg.Duration, cfg.Warmup = time.Second, 200*time.Millisecond
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != cfg.Subs || res.ConnectErrors != 0 || len(res.Steps) != 2 {
				t.Fatalf("%+v", res)
			}
			for _, st := range res.Steps {
				if st.Delivered == 0 || st.Delivered != st.Expected || st.Lost != 0 || st.Disconnects != 0 || st.Errors != 0 {
					t.Fatalf("step %+v", st)
				}
			}
		})
	}
}

// TestRunSocketIORefused: a CONNECT the node refuses is each subscriber's
// error, with the node's reason, not a wait for a welcome that never
// comes.
func TestRunSocketIORefused(t *testing.T) {
	ws, _ := startNode(t, func(c *node.Config) { c.Auth.Mode, c.Auth.Secret = "jwt", testSecret })
	cfg := Config{URLs: []string{ws}, Proto: ProtoSocketIO, Subs: 3, UserPrefix: "u",
		AuthSecret: strings.Repeat("x", len(testSecret)), Timeout: 5 * time.Second}
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err == nil || res.Connected != 0 || res.ConnectErrors != cfg.Subs {
		t.Fatalf("%+v, %v: want every subscriber refused", res, err)
	}
	if !strings.Contains(err.Error(), "connect_error") {
		t.Fatalf("%v: want the node's connect_error", err)
	}
	if d := time.Since(start); d > joinWait/2 {
		t.Fatalf("refused after %v: the subscribers waited instead of reading the refusal", d)
	}
}

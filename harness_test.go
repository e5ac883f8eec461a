package main

// End-to-end harness: real nodes in this test process on loopback with
// ephemeral ports, a real WebSocket client (gws) and real NATS clients.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/history"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// inGoroutine is t for helpers called on a goroutine a test started:
// FailNow works only on the test's own goroutine, so its Fatal reports the
// failure and ends the calling goroutine instead.
type inGoroutine struct{ testing.TB }

func (g inGoroutine) Fatal(args ...any) {
	g.Helper()
	g.Error(args...)
	runtime.Goexit()
}

func (g inGoroutine) Fatalf(format string, args ...any) {
	g.Helper()
	g.Errorf(format, args...)
	runtime.Goexit()
}

// checkFor polls cond until it returns nil or total passes.
func checkFor(t testing.TB, total, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}

// logWriter sends a node's log lines to t.Log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testNode is a node of this test process, with what the tests reach for.
type testNode struct {
	*node.Node
	name   string
	broker *broker.Broker
	hub    *session.Hub
	ws     string // ws://host:port/ws
	http   string // http://host:port
	nats   string // client URL
}

// startTestNode starts a node named name, routes on an ephemeral port,
// seeded with seeds; extra flags go to serve's command line.
func startTestNode(t testing.TB, name string, seeds []string, extra ...string) *testNode {
	t.Helper()
	args := []string{"serve", "--node", name, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--cluster-listen", "127.0.0.1:0", "--admin-listen", "", "--workers", "2", "--log-level", "warn",
		"--history-dir", t.TempDir()}
	for _, s := range seeds {
		args = append(args, "--seed", s)
	}
	cfg, err := loadSettings(append(args, extra...))
	if err != nil {
		t.Fatal(err)
	}
	n, err := startNodeConfig(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := n.Addr().String()
	return &testNode{Node: n, name: name, broker: n.Broker(), hub: n.Hub(),
		ws: "ws://" + addr + "/ws", http: "http://" + addr, nats: n.NATSURL()}
}

// startNodeConfig starts a node of cfg that logs to t and is shut down
// when the test ends.
func startNodeConfig(t testing.TB, cfg node.Config) (*node.Node, error) {
	if cfg.History.Dir == "" || cfg.History.Dir == history.DefaultDir(cfg.Node) {
		cfg.History.Dir = t.TempDir() // not the working directory's
	}
	n, err := node.New(cfg, node.WithLogger(cfg.Logger(logWriter{t})))
	if err != nil {
		return nil, err
	}
	if err := n.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n, nil
}

// startCluster starts size nodes joined only through the first one's
// route URL, and waits until every node sees all of them.
func startCluster(t testing.TB, size int, extra ...string) []*testNode {
	t.Helper()
	first := startTestNode(t, "n1", nil, extra...)
	nodes := []*testNode{first}
	for i := 2; i <= size; i++ {
		nodes = append(nodes, startTestNode(t, fmt.Sprintf("n%d", i), []string{first.broker.ClusterURL()}, extra...))
	}
	for _, n := range nodes {
		awaitNodes(t, n, size)
	}
	return nodes
}

// awaitNodes waits until n sees want nodes, itself included.
func awaitNodes(t testing.TB, n *testNode, want int) {
	t.Helper()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := len(n.broker.Nodes()); got != want {
			return fmt.Errorf("%s sees %d nodes, want %d", n.name, got, want)
		}
		return nil
	})
}

// awaitInterest waits until a publish on any of nodes reaches every node
// holding members of channel: each node's NATS server counts one local
// subscription per member node, routed ones included.
func awaitInterest(t testing.TB, nodes []*testNode, channel string, memberNodes int) {
	t.Helper()
	for _, n := range nodes {
		awaitSubject(t, n.broker.Server(), n.broker.Subjects().Channel(channel), memberNodes)
	}
}

// awaitSubject waits until ns knows of at least want subscriptions, local
// or routed, matching subject.
func awaitSubject(t testing.TB, ns *server.Server, subject string, want int) {
	t.Helper()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := ns.GlobalAccount().Interest(subject); got < want {
			return fmt.Errorf("interest in %s is %d, want %d", subject, got, want)
		}
		return nil
	})
}

func natsConnect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// backendSubscribe subscribes nc to subject with cb and waits until node
// seenBy, where the test's clients send, knows of the subscription.
func backendSubscribe(t testing.TB, nc *nats.Conn, subject string, cb nats.MsgHandler, seenBy *testNode) {
	t.Helper()
	if _, err := nc.Subscribe(subject, cb); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	awaitSubject(t, seenBy.broker.Server(), subject, 1)
}

// httpGet fetches url and returns the status code and the body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metrics reads every unlabelled metric of a node's /metrics at base
// (http://host:port).
func metrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	_, body := httpGet(t, base+"/metrics")
	out := make(map[string]float64)
	for _, line := range strings.Split(body, "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// metricValue reads one unlabelled metric of node n.
func metricValue(t testing.TB, n *testNode, name string) float64 {
	t.Helper()
	v, ok := metrics(t, n.http)[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return v
}

// dumpGoroutines writes every goroutine's stack to a file named in the
// test log, for timeouts that only happen under load.
func dumpGoroutines(t testing.TB) {
	f, err := os.CreateTemp("", "pushgrid-goroutines-*.txt")
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("goroutine").WriteTo(f, 2)
	t.Logf("goroutine dump: %s", f.Name())
}

// frame is one server frame as a client sees it.
type frame map[string]any

// rawKey holds, alone in a frame, a frame that is JSON but not an object.
const rawKey = "_raw"

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

// wsClient is a real WebSocket client. Frames arrive on a channel; hold
// stops its read loop (the socket is then not read at all) until resume.
type wsClient struct {
	t       testing.TB
	conn    *gws.Conn
	frames  chan frame
	closed  chan error // gets the close error once
	gate    chan struct{}
	gateMu  sync.Mutex
	welcome frame
}

type clientEvents struct {
	gws.BuiltinEventHandler
	c *wsClient
}

func (e *clientEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	c := e.c
	c.gateMu.Lock()
	gate := c.gate
	c.gateMu.Unlock()
	if gate != nil {
		<-gate
	}
	raw := m.Data.String()
	var f frame
	if !json.Valid([]byte(raw)) {
		c.t.Errorf("server sent a frame that is not JSON: %q", raw)
		return
	}
	if json.Unmarshal([]byte(raw), &f) != nil {
		// A backend's payload that is not an object: as it came.
		f = frame{rawKey: raw}
	}
	select {
	case c.frames <- f:
	default: // more than the test reads: dropped
	}
}

func (e *clientEvents) OnClose(_ *gws.Conn, err error) { e.c.closed <- err }

type dialOpts struct {
	query  string
	header http.Header // extra request headers (Origin, ...)
	local  string      // local IP to bind
	buffer int
	// transient: the caller closes the client itself; nothing is kept for
	// the test's cleanup (so 10,000 of them are not all kept alive).
	transient bool
}

func dial(t testing.TB, url string, o dialOpts) *wsClient {
	t.Helper()
	c, err := tryDial(t, url, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDial(t testing.TB, url string, o dialOpts) (*wsClient, error) {
	if o.buffer == 0 {
		o.buffer = 256
	}
	c := &wsClient{t: t, frames: make(chan frame, o.buffer), closed: make(chan error, 1)}
	opt := &gws.ClientOption{Addr: url + o.query, ReadMaxPayloadSize: 1 << 20, RequestHeader: o.header}
	if o.local != "" {
		opt.NewDialer = func() (gws.Dialer, error) {
			return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.local)}}, nil
		}
	}
	conn, resp, err := gws.NewClient(&clientEvents{c: c}, opt)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("dial %s: %w (HTTP %d %s)", url+o.query, err, resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil, fmt.Errorf("dial %s: %w", url+o.query, err)
	}
	c.conn = conn
	go conn.ReadLoop()
	if !o.transient {
		t.Cleanup(func() { _ = conn.WriteClose(1000, nil) })
	}
	c.welcome = c.next("welcome")
	return c, nil
}

func (c *wsClient) id() string   { return c.welcome.str("conn") }
func (c *wsClient) user() string { return c.welcome.str("user") }

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *wsClient) sendRaw(s string) {
	c.t.Helper()
	if err := c.conn.WriteString(s); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// next returns the next frame of type typ, skipping others; it fails the
// test after 5 s.
func (c *wsClient) next(typ string) frame {
	c.t.Helper()
	return c.nextWhere(typ, func(frame) bool { return true })
}

func (c *wsClient) nextWhere(typ string, ok func(frame) bool) frame {
	c.t.Helper()
	return c.nextMatching("a matching "+typ+" frame", func(f frame) bool { return f.str("type") == typ && ok(f) })
}

// answer returns the next frame that echoes id, of any type: the reply,
// pong or error to the frame sent with it.
func (c *wsClient) answer(id any) frame {
	c.t.Helper()
	return c.nextMatching(fmt.Sprintf("an answer to id %v", id), func(f frame) bool { return f["id"] == id })
}

// nextMatching returns the next frame ok accepts, skipping others; it
// fails the test, saying it waited for what, after 5 s.
func (c *wsClient) nextMatching(what string, ok func(frame) bool) frame {
	c.t.Helper()
	return c.nextMatchingWithin(5*time.Second, what, ok)
}

// nextMatchingWithin is nextMatching waiting up to d.
func (c *wsClient) nextMatchingWithin(d time.Duration, what string, ok func(frame) bool) frame {
	c.t.Helper()
	timeout := time.After(d)
	var skipped []frame
	for {
		select {
		case f := <-c.frames:
			if ok(f) {
				return f
			}
			skipped = append(skipped, f)
		case err := <-c.closed:
			c.closed <- err
			c.t.Fatalf("closed while waiting for %s: %v", what, err)
		case <-timeout:
			dumpGoroutines(c.t)
			c.t.Fatalf("no %s within %v; skipped %v", what, d, skipped)
		}
	}
}

// expectNone fails if a frame of type typ arrives within d.
func (c *wsClient) expectNone(typ string, d time.Duration) {
	c.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if f.str("type") == typ {
				c.t.Fatalf("unexpected %s frame: %v", typ, f)
			}
		case <-timeout:
			return
		}
	}
}

// roundTrip checks the connection is alive: a ping gets its pong.
func (c *wsClient) roundTrip() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	c.next("pong")
}

// join joins channel and waits for joined.
func (c *wsClient) join(channel string) {
	c.t.Helper()
	c.send(map[string]any{"type": "join", "channel": channel})
	c.nextWhere("joined", func(f frame) bool { return f.str("channel") == channel })
}

// closeCode waits for the connection to close and returns the code the
// server sent (0 if none).
func (c *wsClient) closeCode(within time.Duration) uint16 {
	c.t.Helper()
	select {
	case err := <-c.closed:
		c.closed <- err
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return 0
	case <-time.After(within):
		c.t.Fatalf("not closed within %v", within)
	}
	return 0
}

func (c *wsClient) hold() {
	c.gateMu.Lock()
	c.gate = make(chan struct{})
	c.gateMu.Unlock()
}

func (c *wsClient) resume() {
	c.gateMu.Lock()
	close(c.gate)
	c.gate = nil
	c.gateMu.Unlock()
}

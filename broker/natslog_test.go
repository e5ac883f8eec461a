package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logCapture is a slog.Handler that keeps every record's message and
// attributes as one line.
type logCapture struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogCapture() *logCapture { return &logCapture{mu: &sync.Mutex{}, lines: &[]string{}} }

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCapture{mu: h.mu, lines: h.lines, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *logCapture) WithGroup(string) slog.Handler { return h }
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, sb.String())
	h.mu.Unlock()
	return nil
}

func (h *logCapture) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), *h.lines...)
}

// count returns how many lines hold every one of subs.
func (h *logCapture) count(subs ...string) int {
	n := 0
	for _, l := range h.all() {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// TestClusterNameMismatchLogsOnce: nodes with different cluster names
// refuse each other's routes on every retry, about once a second; each
// side says so once, in words that name both cluster names and the key.
func TestClusterNameMismatchLogsOnce(t *testing.T) {
	logs := newLogCapture()
	mk := func(name, cluster string, seeds ...string) *Broker {
		b, err := New(Config{Node: name, Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", Seeds: seeds,
			ClusterName: cluster, Heartbeat: 200 * time.Millisecond, Logger: slog.New(logs).With("node", name)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background(), &recorder{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
		return b
	}
	a := mk("a", "blue")
	mk("b", "green", a.ClusterURL())
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if logs.count("node=a", "ERROR") == 0 {
			return fmt.Errorf("no refusal logged yet")
		}
		return nil
	})
	created := logs.count("node=a", "Route connection created")
	// The retries, a second apart, are what is tested.
	time.Sleep(2200 * time.Millisecond)
	for _, node := range []string{"a", "b"} {
		if n := logs.count("node="+node, "nats.cluster_name", `"blue"`, `"green"`); n != 1 {
			t.Errorf("node %s: %d lines explain the cluster name mismatch, want 1:\n%s", node, n, strings.Join(logs.all(), "\n"))
		}
	}
	for _, l := range logs.all() {
		if strings.Contains(l, "rid:") && !strings.HasPrefix(l, "INFO") {
			t.Errorf("a raw route error line got through: %s", l)
		}
	}
	if n := logs.count("node=a", "Route connection created"); n != created {
		t.Errorf("node a went on logging the failing peer's route connections: %d, then %d", created, n)
	}
}

func TestNatsLoggerRepeats(t *testing.T) {
	logs := newLogCapture()
	now := time.Unix(1000, 0)
	l := newNatsLogger(slog.New(logs), "blue")
	l.now = func() time.Time { return now }

	refuse := func(port int, theirs string) {
		l.Errorf(fmt.Sprintf("10.0.0.2:%d - rid:%d - Rejecting connection, cluster name %%q does not match %%q", port, port), theirs, "blue")
	}
	refuse(40001, "green")
	refuse(40002, "green")                                                                                        // the same peer again, from another port
	refuse(40003, "red")                                                                                          // another name: another message
	l.Errorf("10.0.0.3:40004 - rid:9 - Rejecting connection, cluster name %q does not match %q", "green", "blue") // another peer
	if got := logs.count("nats.cluster_name"); got != 3 {
		t.Fatalf("%d lines, want 3:\n%s", got, strings.Join(logs.all(), "\n"))
	}
	for i := 0; i < 5; i++ {
		now = now.Add(10 * time.Second)
		refuse(40010+i, "green")
	}
	if got := logs.count("nats.cluster_name", `"green"`, "10.0.0.2"); got != 1 {
		t.Fatalf("within a minute: %d lines for the same peer and names, want 1", got)
	}
	now = now.Add(15 * time.Second)
	refuse(40020, "green")
	if got := logs.count("nats.cluster_name", `"green"`, "10.0.0.2", "suppressed=6"); got != 1 {
		t.Fatalf("after a minute: want one line with suppressed=6 (the second port and five more):\n%s", strings.Join(logs.all(), "\n"))
	}

	// The refused connection's other lines are dropped; the retries'
	// connections from the refusing host repeat; other hosts' do not.
	l.Noticef("10.0.0.4:41001 - rid:41001 - Route connection created")
	l.Errorf("10.0.0.4:41001 - rid:41001 - Rejecting connection, cluster name %q does not match %q", "green", "blue")
	before := len(logs.all())
	l.Noticef("10.0.0.4:41001 - rid:41001 - Router connection closed: Cluster Name Conflict")
	l.Errorf("10.0.0.4:41001 - rid:41001 - cluster name from remote server conflicts")
	now = now.Add(time.Second)
	l.Noticef("10.0.0.4:41002 - rid:41002 - Route connection created")
	if got := logs.all()[before:]; len(got) != 0 {
		t.Fatalf("logged %q", got)
	}
	l.Noticef("10.0.0.9:40031 - rid:40031 - Route connection created")
	if got := logs.count("10.0.0.9", "Route connection created"); got != 1 {
		t.Fatalf("another host's route: %d lines, want 1", got)
	}

	// Connecting side: the refusal comes as a close; the seed's cluster
	// name, learnt at Start, names it.
	l.peerCluster("10.0.0.7:6222", "green")
	l.Noticef("10.0.0.7:6222 - rid:3 - Router connection closed: Cluster Name Conflict")
	l.Errorf("10.0.0.7:6222 - rid:3 - Route Error 'Rejecting connection, cluster name %q does not match %q'", "blue", "green")
	if got := logs.count("ERROR", "nats.cluster_name", "10.0.0.7:6222", `"green"`, `"blue"`); got != 1 {
		t.Fatalf("connecting side: %d lines, want 1:\n%s", got, strings.Join(logs.all(), "\n"))
	}

	// Lines of one format with different values are different messages.
	l.Errorf("Error trying to connect to route (attempt %v): %v", 1, "dial tcp 10.0.0.5:6222: connection refused")
	l.Errorf("Error trying to connect to route (attempt %v): %v", 2, "dial tcp 10.0.0.5:6222: connection refused")
	l.Errorf("Error trying to connect to route (attempt %v): %v", 3, "dial tcp 10.0.0.6:6222: connection refused")
	if got := logs.count("Error trying to connect to route"); got != 2 {
		t.Fatalf("%d connect errors logged, want 2 (one per address):\n%s", got, strings.Join(logs.all(), "\n"))
	}
}

func TestRoutes(t *testing.T) {
	n1, _ := startNode(t, "r1")
	if got := n1.Routes(); got != 0 {
		t.Fatalf("alone: %d routes", got)
	}
	startNode(t, "r2", n1.ClusterURL())
	startNode(t, "r3", n1.ClusterURL())
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		if got := n1.Routes(); got != 2 {
			return fmt.Errorf("%d routes, want 2", got)
		}
		return nil
	})
	var nobody *Broker = &Broker{}
	if got := nobody.Routes(); got != 0 {
		t.Fatalf("without a server: %d routes", got)
	}
}

// TestNatsLoggerBounded: lines of ever new kinds, as a peer sending
// garbage could make, never grow the logger's memory past maxKinds.
func TestNatsLoggerBounded(t *testing.T) {
	l := newNatsLogger(slog.New(slog.DiscardHandler), "c")
	for i := 0; i < 3*maxKinds; i++ {
		l.Errorf("client parser error: %q", fmt.Sprintf("garbage %d", i))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.seen); n > maxKinds {
		t.Fatalf("%d kinds remembered, bound %d", n, maxKinds)
	}
}

// TestNatsLoggerRouteSecret: a route refused for its cluster secret is
// said once on each side, in words naming the key; the server's own lines
// about the refused connections, and their retries, are not.
func TestNatsLoggerRouteSecret(t *testing.T) {
	logs := newLogCapture()
	now := time.Unix(1000, 0)
	l := newNatsLogger(slog.New(logs), "blue")
	l.now = func() time.Time { return now }

	// Refusing side: routeAuth says why; the server then logs its own.
	for i := 1; i <= 3; i++ {
		addr := fmt.Sprintf("10.0.0.2:%d", 40000+i)
		l.Noticef("%s - rid:%d - Route connection created", addr, i)
		l.routeRefused(addr, uint64(i), "presents no nats.cluster_secret")
		l.Errorf("%s - rid:%d - authentication error", addr, i)
		l.Noticef("%s - rid:%d - Router connection closed: Authentication Failure", addr, i)
		now = now.Add(time.Second)
	}
	l.routeRefused("10.0.0.2:40009", 9, "presents another nats.cluster_secret") // another reason
	if got := logs.count("ERROR", "route refused: the node at 10.0.0.2 presents no nats.cluster_secret; every node of a cluster needs the same nats.cluster_secret"); got != 1 {
		t.Fatalf("%d refusals said, want 1:\n%s", got, strings.Join(logs.all(), "\n"))
	}
	if got := logs.count("presents another nats.cluster_secret"); got != 1 {
		t.Fatalf("another reason: %d lines, want 1", got)
	}
	if got := logs.count("Route connection created"); got != 1 {
		t.Fatalf("%d route connections logged, want the first only", got)
	}
	if got := logs.count("rid:"); got != 1 {
		t.Fatalf("raw lines of refused connections got through:\n%s", strings.Join(logs.all(), "\n"))
	}

	// Refused side: the peer's -ERR, then the close.
	refusedBy := func(id int) {
		l.Noticef("10.0.0.3:6222 - rid:%d - Route connection created", id)
		l.Errorf("10.0.0.3:6222 - rid:%d - Route Error %s", id, "'Authorization Violation'")
		l.Noticef("10.0.0.3:6222 - rid:%d - Router connection closed: Parse Error", id)
	}
	refusedBy(20)
	now = now.Add(time.Second)
	refusedBy(21)
	want := "route to nats://10.0.0.3:6222 refused: authorization violation: is nats.cluster_secret the same on every node?"
	if got := logs.count("ERROR", want); got != 1 {
		t.Fatalf("%d lines say %q, want 1:\n%s", got, want, strings.Join(logs.all(), "\n"))
	}
	now = now.Add(time.Minute)
	refusedBy(22)
	if got := logs.count("ERROR", want, "suppressed=1"); got != 1 {
		t.Fatalf("after a minute: want the line again with suppressed=1:\n%s", strings.Join(logs.all(), "\n"))
	}

	// A route reset by the refusing peer while this node still wrote: a
	// line each time, with other ports.
	for i := 0; i < 3; i++ {
		l.Errorf("10.0.0.4:6222 - rid:%d - Error flushing: writev tcp 10.0.0.9:%d->10.0.0.4:6222: writev: connection reset by peer", 30+i, 43000+i)
	}
	if got := logs.count("Error flushing"); got != 1 {
		t.Fatalf("%d socket errors logged, want 1", got)
	}
}

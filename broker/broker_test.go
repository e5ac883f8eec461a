package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// recorder is a Receiver that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got []string // "kind key payload"
}

func (r *recorder) add(kind, key string, p []byte) {
	r.mu.Lock()
	r.got = append(r.got, fmt.Sprintf("%s %s %s", kind, key, p))
	r.mu.Unlock()
}
func (r *recorder) DeliverChannel(c string, p []byte) { r.add("chan", c, p) }
func (r *recorder) DeliverUser(u string, p []byte)    { r.add("user", u, p) }
func (r *recorder) DeliverConn(id string, p []byte)   { r.add("conn", id, p) }
func (r *recorder) DeliverAll(p []byte)               { r.add("all", "*", p) }
func (r *recorder) DeliverStored(c string, seq, prev uint64, p []byte) {
	r.add("stored", c+"#"+strconv.FormatUint(seq, 10)+"<"+strconv.FormatUint(prev, 10), p)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == s {
			return true
		}
	}
	return false
}

// checkFor polls cond until it returns nil or the deadline passes.
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

func startNode(t testing.TB, name string, seeds ...string) (*Broker, *recorder) {
	t.Helper()
	return startNodeBeat(t, name, 200*time.Millisecond, seeds...)
}

func startNodeBeat(t testing.TB, name string, beat time.Duration, seeds ...string) (*Broker, *recorder) {
	t.Helper()
	return startConfig(t, Config{Node: name, Seeds: seeds, Heartbeat: beat})
}

// startConfig starts a node of cfg, with routes, on loopback ports of its
// own and a 200ms heartbeat unless cfg says otherwise; it is shut down
// with the test.
func startConfig(t testing.TB, cfg Config) (*Broker, *recorder) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.ClusterListen == "" {
		cfg.ClusterListen = "127.0.0.1:0"
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	rec := &recorder{}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	return b, rec
}

func names(nodes []Node) string {
	s := ""
	for _, n := range nodes {
		s += n.Name + " "
	}
	return s
}

func checkView(t testing.TB, b *Broker, want string, within time.Duration) {
	t.Helper()
	checkFor(t, within, 20*time.Millisecond, func() error {
		if got := names(b.Nodes()); got != want {
			return fmt.Errorf("node %s sees %q, want %q", b.cfg.Node, got, want)
		}
		return nil
	})
}

// kill stops a node the hard way: no leaving beat, no flush.
func kill(b *Broker) {
	b.shutOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.nc.Close()
		b.shutdownServer()
	})
}

func TestThreeNodeCluster(t *testing.T) {
	// The default heartbeat: the acceptance times are for it.
	n1, rec1 := startNodeBeat(t, "n1", time.Second)
	seed := n1.ClusterURL()
	n2, _ := startNodeBeat(t, "n2", time.Second, seed)
	n3, _ := startNodeBeat(t, "n3", time.Second, seed)

	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "n1 n2 n3 ", 3*time.Second)
	}

	// A backend's publish on node 3's client port reaches a channel of
	// node 1.
	if err := n1.Subscribe("orders"); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(n3.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if err := pub.Publish(n3.Subjects().Channel("orders"), []byte("42")); err != nil {
			return err
		}
		_ = pub.Flush()
		time.Sleep(20 * time.Millisecond)
		if !rec1.has("chan orders 42") {
			return fmt.Errorf("nothing reached node 1")
		}
		return nil
	})

	// Node 3 dies without a word; the others forget it within 5 s.
	kill(n3)
	checkView(t, n1, "n1 n2 ", 5*time.Second)
	checkView(t, n2, "n1 n2 ", 5*time.Second)

	// Started again with the same seeds, it rejoins.
	n3b, _ := startNodeBeat(t, "n3", time.Second, seed)
	for _, b := range []*Broker{n1, n2, n3b} {
		checkView(t, b, "n1 n2 n3 ", 5*time.Second)
	}

	// A graceful shutdown leaves the views at once.
	if err := n3b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n3b.Shutdown(context.Background()); err != nil {
		t.Fatal("second Shutdown:", err)
	}
	checkView(t, n1, "n1 n2 ", time.Second)
}

func TestChannelDeliveryAcrossNodes(t *testing.T) {
	n1, rec1 := startNode(t, "a1")
	n2, _ := startNode(t, "a2", n1.ClusterURL())
	checkView(t, n2, "a1 a2 ", 3*time.Second)
	if err := n1.Subscribe("room.1"); err != nil {
		t.Fatal(err)
	}
	// Users, conns and broadcast reach every node through its fixed
	// subscriptions; channels only where there is interest.
	nc, err := nats.Connect(n2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := n2.Subjects()
	cases := []struct{ subject, want string }{
		{s.Channel("room.1"), "chan room.1 hi"},
		{s.User("alice.smith"), "user alice.smith hi"},
		{s.Conn("c0nn"), "conn c0nn hi"},
		{s.All(), "all * hi"},
	}
	for _, c := range cases {
		t.Run(c.subject, func(t *testing.T) {
			checkFor(t, 3*time.Second, 50*time.Millisecond, func() error {
				if err := nc.Publish(c.subject, []byte("hi")); err != nil {
					return err
				}
				_ = nc.Flush()
				time.Sleep(20 * time.Millisecond)
				if !rec1.has(c.want) {
					return fmt.Errorf("node a1 did not get %q", c.want)
				}
				return nil
			})
		})
	}
}

func TestInterestCounting(t *testing.T) {
	b, rec := startNode(t, "solo")
	ns := b.Server()
	base := ns.NumSubscriptions()
	for i := 0; i < 1000; i++ {
		if err := b.Subscribe("lobby"); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		_ = b.Conn().Flush()
		if got := ns.NumSubscriptions(); got != base+1 {
			return fmt.Errorf("server has %d subscriptions, want %d", got, base+1)
		}
		return nil
	})
	if err := b.Publish("lobby", []byte("x")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if !rec.has("chan lobby x") {
			return fmt.Errorf("no delivery")
		}
		return nil
	})
	for i := 0; i < 999; i++ {
		b.Unsubscribe("lobby")
	}
	if got := b.Subscriptions(); got != 1 {
		t.Fatalf("after 999 leaves: %d channel subscriptions, want 1", got)
	}
	b.Unsubscribe("lobby")
	b.Unsubscribe("lobby") // one too many is harmless
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		_ = b.Conn().Flush()
		if got := ns.NumSubscriptions(); got != base {
			return fmt.Errorf("server has %d subscriptions, want %d", got, base)
		}
		return nil
	})
}

func TestRequestNoResponders(t *testing.T) {
	b, _ := startNode(t, "req")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := b.Send(ctx, "order", "u", "c", []byte(`{}`), true); err != ErrNoResponders {
		t.Fatalf("got %v, want ErrNoResponders", err)
	}
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe(b.Subjects().Recv("order"), func(m *nats.Msg) {
		_ = m.Respond([]byte(m.Header.Get(HeaderUser) + "/" + m.Header.Get(HeaderConn) + "/" + m.Header.Get(HeaderNode)))
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	reply, err := b.Send(ctx, "order", "u", "c", []byte(`{}`), true)
	if err != nil || string(reply) != "u/c/req" {
		t.Fatalf("reply %q, %v", reply, err)
	}
}

func TestSeedDownIsNotFatal(t *testing.T) {
	// Nothing listens on this port; the node starts anyway and keeps trying.
	b, _ := startNode(t, "lonely", "nats://127.0.0.1:1")
	if got := names(b.Nodes()); got != "lonely " {
		t.Fatalf("view %q", got)
	}
}

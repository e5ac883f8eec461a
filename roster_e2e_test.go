package main

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestDeadNodeMembersLeave: after a SIGKILL of a node, its members leave
// every channel once, cluster-wide: the members elsewhere get "left"
// control frames, and backends one leave event per channel and one
// disconnect event per connection, published by one surviving node, which
// here joined the cluster after the dead node's members had joined.
func TestDeadNodeMembersLeave(t *testing.T) {
	nodes := startCluster(t, 2)
	victim := startProcess(t, "k3", []string{nodes[0].broker.ClusterURL()})
	for _, n := range nodes {
		awaitNodes(t, n, 3)
	}
	nc := natsConnect(t, nodes[0].nats)
	var mu sync.Mutex
	events := map[string]int{}
	count := func(m *nats.Msg) {
		mu.Lock()
		events[m.Subject]++
		mu.Unlock()
	}
	backendSubscribe(t, nc, "push.events.leave.>", count, nodes[1])
	backendSubscribe(t, nc, "push.events.disconnect", count, nodes[1])
	awaitSubject(t, nodes[0].broker.Server(), "push.events.disconnect", 1)

	u1 := dial(t, victim.ws, dialOpts{query: "?user=u1"})
	u2 := dial(t, victim.ws, dialOpts{query: "?user=u2"})
	u1.join("room")
	u2.join("room")
	u2.join("other")
	w := dial(t, nodes[0].ws, dialOpts{query: "?user=w"})
	w2 := dial(t, nodes[1].ws, dialOpts{query: "?user=w2"})
	w.join("room")
	w2.join("other")
	time.Sleep(2500 * time.Millisecond) // the rosters go round once a second

	// A node that joins now, after the deltas went round, asks for the
	// rosters whole; it has the lowest name, so it is the one to announce.
	late := startTestNode(t, "n0", []string{nodes[0].broker.ClusterURL()})
	for _, n := range append(nodes, late) {
		awaitNodes(t, n, 4)
	}
	time.Sleep(3 * time.Second) // asked within a second, answered the next

	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.wait(t, 5*time.Second)
	left := map[string]bool{}
	for len(left) < 2 {
		f := w.nextMatching("left control frames", func(f frame) bool {
			return f.str("type") == "control" && f.str("msg") == "left" && f.str("channel") == "room"
		})
		left[f.str("user")] = true
	}
	if !left["u1"] || !left["u2"] {
		t.Fatalf("room: left %v", left)
	}
	w2.nextMatching("u2 left other", func(f frame) bool {
		return f.str("type") == "control" && f.str("msg") == "left" && f.str("user") == "u2" && f.str("channel") == "other"
	})
	time.Sleep(2 * time.Second) // any second announcement would come now
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"push.events.leave.room": 2, "push.events.leave.other": 1, "push.events.disconnect": 2}
	for subject, n := range want {
		if events[subject] != n {
			t.Errorf("%s: %d events, want %d (all: %v)", subject, events[subject], n, events)
		}
	}
	w.expectNone("control", 500*time.Millisecond)
}

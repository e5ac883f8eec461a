package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// moveStreamLeader makes the node named leader lead the history stream
// that stores subject, asking its leader to step down in its favour.
func moveStreamLeader(t testing.TB, via *testNode, subject, leader string) {
	t.Helper()
	js, err := jetstream.New(via.broker.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	stream, err := js.StreamNameBySubject(ctx, subject)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		// Each request bounded alone: one sent while the leadership moves
		// can go unanswered (a CI run waited out the whole test's context
		// for one, the leader long moved).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		ci, err := info.Info(ctx)
		if err != nil {
			return err
		}
		if ci.Cluster != nil && ci.Cluster.Leader == leader {
			return nil
		}
		_, _ = via.broker.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(`{"placement":{"preferred":"`+leader+`"}}`))
		return fmt.Errorf("leader is not %s yet", leader)
	})
}

// TestHistoryFailover: a node is killed (SIGKILL) while a backend
// publishes to a history channel through push.api.publish with ids,
// retrying what fails; the node leads the channel's stream in one run and
// follows in the other. A member on another node gets every message
// exactly once and in order (when the leader died, the channel pausing
// while the stream elects another: the pause is logged, measured as the
// longest time between two stored messages), and a member on the killed
// node reconnects to another with since and ends with every message
// exactly once too.
func TestHistoryFailover(t *testing.T) {
	t.Run("leader", func(t *testing.T) { historyFailover(t, true) })
	t.Run("follower", func(t *testing.T) { historyFailover(t, false) })
}

func historyFailover(t *testing.T, killLeader bool) {
	cfg := writeConfig(t, historyConfig)
	nodes := startCluster(t, 2, "--config", cfg)
	victim := startProcess(t, "k3", []string{nodes[0].broker.ClusterURL()}, "--config", cfg)
	for _, n := range nodes {
		awaitNodes(t, n, 3)
		awaitHistory(t, n, 3)
	}
	// The stream's leader moves to k3, which is then killed.
	want := "n1"
	if killLeader {
		want = "k3"
	}
	moveStreamLeader(t, nodes[0], "push.chan.long.f", want)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	member := dial(t, nodes[1].ws, dialOpts{query: "?user=member", buffer: 4096})
	member.send(map[string]any{"type": "join", "channel": "long.f", "id": 1})
	member.answer(float64(1))
	onVictim := dial(t, victim.ws, dialOpts{query: "?user=mobile", buffer: 4096})
	onVictim.send(map[string]any{"type": "join", "channel": "long.f", "id": 1})
	onVictim.answer(float64(1))

	nc := natsConnect(t, nodes[0].nats)
	const total = 400
	var mu sync.Mutex
	var stored []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			req, _ := json.Marshal(map[string]any{"channel": "long.f", "data": map[string]any{"type": "news", "n": i}, "id": fmt.Sprintf("f-%d", i)})
			for ctx.Err() == nil {
				m, err := nc.Request("push.api.publish", req, 12*time.Second)
				if err == nil && !json.Valid(m.Data) {
					continue
				}
				var out map[string]any
				if err == nil && json.Unmarshal(m.Data, &out) == nil && out["seq"] != nil {
					break
				}
				time.Sleep(100 * time.Millisecond) // the same id again
			}
			mu.Lock()
			stored = append(stored, time.Now())
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	killed := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.wait(t, 5*time.Second)
	// What the client on the killed node saw, until its socket closed.
	var seen []int
	var lastSeq uint64
	for open := true; open; {
		select {
		case f := <-onVictim.frames:
			if f.str("type") == "news" {
				n, _ := f["n"].(float64)
				seen = append(seen, int(n))
				lastSeq = seqOf(f)
			}
		case <-onVictim.closed:
			open = false
		case <-time.After(10 * time.Second):
			t.Fatal("the killed node's client was not closed")
		}
	}
	// It reconnects to another node and resumes.
	resumed := dial(t, nodes[0].ws, dialOpts{query: "?user=mobile", buffer: 4096})
	checkFor(t, 40*time.Second, 500*time.Millisecond, func() error {
		resumed.send(map[string]any{"type": "join", "channel": "long.f", "since": lastSeq, "id": "r"})
		// A join waits up to 10 s for a stream electing its leader.
		j := resumed.nextMatchingWithin(15*time.Second, "the resume's answer", func(f frame) bool { return f["id"] == "r" })
		if j.str("type") != "joined" {
			return fmt.Errorf("resume: %v", j) // unavailable while the stream elects a leader
		} else if lastSeq > 0 && j["recovered"] != true {
			t.Fatalf("resume since %d: %v", lastSeq, j)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher did not finish within 60 s")
	}
	mu.Lock()
	pause := time.Duration(0)
	for i := 1; i < len(stored); i++ {
		if stored[i].After(killed) {
			pause = max(pause, stored[i].Sub(stored[i-1]))
		}
	}
	mu.Unlock()
	t.Logf("failover: the longest time between two stored messages after the kill: %v", pause.Round(10*time.Millisecond))

	got, _ := news(t, member, total)
	for k, n := range got {
		if n != k+1 {
			t.Fatalf("message %d is n=%d: %v", k, n, got)
		}
	}
	member.expectNone("news", 500*time.Millisecond)
	rest, _ := news(t, resumed, total-len(seen))
	all := append(seen, rest...)
	for k, n := range all {
		if n != k+1 {
			t.Fatalf("the resumed client's message %d is n=%d (%d before the kill)", k, n, len(seen))
		}
	}
	resumed.expectNone("news", 500*time.Millisecond)
}

// TestHistoryUnavailable: with two of a stream's three replicas killed
// (SIGKILL), the stream has no leader and elects none: a join with since
// waits up to 10 s, then answers the error unavailable; so does a plain
// join of a history channel (its last seq cannot be read), and a durable
// publish through the server API. A channel without history still works.
func TestHistoryUnavailable(t *testing.T) {
	cfg := writeConfig(t, historyConfig)
	n1 := startTestNode(t, "n1", nil, "--config", cfg)
	k2 := startProcess(t, "k2", []string{n1.broker.ClusterURL()}, "--config", cfg)
	k3 := startProcess(t, "k3", []string{n1.broker.ClusterURL()}, "--config", cfg)
	awaitNodes(t, n1, 3)
	awaitHistory(t, n1, 3)
	nc := natsConnect(t, n1.nats)
	if seq := apiCall(t, nc, "publish", map[string]any{"channel": "hist.u", "data": map[string]any{"type": "news", "n": 1}, "id": "u1"})["seq"]; seq == nil {
		t.Fatalf("publish before the kill: no seq")
	}
	js, err := jetstream.New(n1.broker.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	stream, err := js.StreamNameBySubject(ctx, "push.chan.hist.u")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*procNode{k2, k3} {
		if err := k.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = k.wait(t, 5*time.Second)
	}
	// n1's replica may lead on for a while; once it sees no majority it
	// steps down, and the stream answers no one.
	checkFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil
		}
		if info, err := st.Info(ctx); err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			return fmt.Errorf("stream %s still led by %s", stream, info.Cluster.Leader)
		}
		return nil
	})

	// All three at once: each waits out its 10 s.
	published := make(chan map[string]any, 1)
	go func() {
		body, _ := json.Marshal(map[string]any{"channel": "hist.u", "data": 2, "id": "u2"})
		var out map[string]any
		if m, err := nc.Request("push.api.publish", body, 20*time.Second); err != nil {
			out = map[string]any{"request": err.Error()}
		} else if err := json.Unmarshal(m.Data, &out); err != nil {
			out = map[string]any{"answer": string(m.Data)}
		}
		published <- out
	}()
	// A connection's frames are handled in order: one client each.
	c, c2 := dial(t, n1.ws, dialOpts{query: "?user=u"}), dial(t, n1.ws, dialOpts{query: "?user=u2"})
	start := time.Now()
	c.send(map[string]any{"type": "join", "channel": "hist.u", "since": 1, "id": "since"})
	c2.send(map[string]any{"type": "join", "channel": "hist.u", "id": "plain"})
	for id, c := range map[string]*wsClient{"since": c, "plain": c2} {
		f := c.nextMatchingWithin(20*time.Second, "the answer to join "+id, func(f frame) bool { return f["id"] == id })
		t.Logf("join %s answered %v after %v", id, f, time.Since(start).Round(100*time.Millisecond))
		if f.str("type") != "error" || f.str("code") != "unavailable" {
			t.Fatalf("join %s on a leaderless stream: %v, want error unavailable", id, f)
		}
	}
	if got := <-published; got["error"] == nil {
		t.Fatalf("durable publish on a leaderless stream: %v, want an error", got)
	} else {
		t.Logf("durable publish: %v", got)
	}
	c.send(map[string]any{"type": "join", "channel": "plain.u", "id": "other"})
	if f := c.answer("other"); f.str("type") != "joined" {
		t.Fatalf("a channel without history: %v", f)
	}
}

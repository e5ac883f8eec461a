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
	js, err := jetstream.New(nodes[0].broker.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.StreamNameBySubject(ctx, "push.chan.long.f")
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 500*time.Millisecond, func() error {
		info, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		ci, err := info.Info(ctx)
		if err != nil {
			return err
		}
		want := "n1"
		if killLeader {
			want = "k3"
		}
		if ci.Cluster != nil && ci.Cluster.Leader == want {
			return nil
		}
		_, _ = nodes[0].broker.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(`{"placement":{"preferred":"`+want+`"}}`), 5*time.Second)
		return fmt.Errorf("leader is not %s yet", want)
	})

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

package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// historyConfig keeps the last 100 messages of every hist.> channel; no
// joined/left announcements, which would be stored too, so that the tests
// know every seq.
const historyConfig = `
[[channels]]
pattern = "hist.>"
history = 100
history_ttl = "1h"
announce = false

[[channels]]
pattern = "long.>"
history = 10000
announce = false
`

// awaitHistory waits until n's history streams exist with replicas.
func awaitHistory(t testing.TB, n *testNode, replicas int) {
	t.Helper()
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if got := n.HistoryReplicas(); got < replicas {
			return fmt.Errorf("%s: history streams at %d replicas, want %d", n.name, got, replicas)
		}
		return nil
	})
}

// seqOf is a frame's seq, 0 when it has none.
func seqOf(f frame) uint64 {
	n, _ := f["seq"].(float64)
	return uint64(n)
}

// newsUntil reads c's "news" frames, checking that their seqs increase,
// until one has n=last or none comes for quiet; it returns their n fields.
func newsUntil(c *wsClient, last int, quiet time.Duration) []int {
	var ns []int
	var seq uint64
	for {
		select {
		case f := <-c.frames:
			if f.str("type") != "news" {
				continue
			}
			if s := seqOf(f); s <= seq {
				c.t.Fatalf("news frame %v: seq %d after %d", f, s, seq)
			}
			seq = seqOf(f)
			n, _ := f["n"].(float64)
			ns = append(ns, int(n))
			if int(n) == last {
				return ns
			}
		case <-time.After(quiet):
			return ns
		}
	}
}

// seqRange is from, from+1, ..., to.
func seqRange(from, to int) []int {
	var r []int
	for i := from; i <= to; i++ {
		r = append(r, i)
	}
	return r
}

// describeRun says what ns, which should count up by one, holds: its
// first and last and where it skips or repeats.
func describeRun(ns []int) string {
	if len(ns) == 0 {
		return "none"
	}
	var odd []string
	for k := 1; k < len(ns) && len(odd) < 10; k++ {
		if ns[k] != ns[k-1]+1 {
			odd = append(odd, fmt.Sprintf("%d then %d", ns[k-1], ns[k]))
		}
	}
	return fmt.Sprintf("n=%d..%d, breaks: %v", ns[0], ns[len(ns)-1], odd)
}

// news reads the next count "news" frames of c, checks their seqs
// increase, and returns their n fields and the last seq.
func news(t testing.TB, c *wsClient, count int) (ns []int, last uint64) {
	t.Helper()
	for range count {
		f := c.next("news")
		seq := seqOf(f)
		if seq <= last {
			t.Fatalf("news frame %v: seq %d after %d", f, seq, last)
		}
		last = seq
		n, _ := f["n"].(float64)
		ns = append(ns, int(n))
	}
	return ns, last
}

func publishNews(t testing.TB, nc interface {
	Publish(string, []byte) error
}, channel string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := nc.Publish("push.chan."+channel, fmt.Appendf(nil, `{"type":"news","n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHistoryOneNode: on one node (no routes: JetStream alone), a history
// channel's frames carry seq; joined says the last seq; since replays
// what came after it and says recovered; history replays the last K; a
// channel without history answers recovered:false.
func TestHistoryOneNode(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--config", writeConfig(t, historyConfig), "--cluster-listen", "")
	awaitHistory(t, n, 1)
	nc := natsConnect(t, n.nats)

	a := dial(t, n.ws, dialOpts{query: "?user=alice"})
	a.send(map[string]any{"type": "join", "channel": "hist.a", "id": 1})
	if j := a.answer(float64(1)); j.str("type") != "joined" || seqOf(j) != 0 || j["recovered"] != nil {
		t.Fatalf("first join: %v, want joined with seq 0 and no recovered", j)
	}
	publishNews(t, nc, "hist.a", 1, 5)
	got, last := news(t, a, 5)
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("live news %v", got)
	}

	// Message 2's seq, from a replay of everything.
	b := dial(t, n.ws, dialOpts{query: "?user=bob"})
	b.send(map[string]any{"type": "join", "channel": "hist.a", "since": 0, "id": "b"})
	j := b.answer("b")
	if seqOf(j) != last || j["recovered"] != false {
		t.Fatalf("join since 0: %v, want seq %d and recovered false (there is no message 0)", j, last)
	}
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, seqOf(b.next("news")))
	}

	c := dial(t, n.ws, dialOpts{query: "?user=carol"})
	c.send(map[string]any{"type": "join", "channel": "hist.a", "since": seqs[1], "id": "c"})
	if j := c.answer("c"); seqOf(j) != last || j["recovered"] != true {
		t.Fatalf("join since message 2: %v, want seq %d, recovered true", j, last)
	}
	if got, _ := news(t, c, 3); fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("replay since message 2: %v", got)
	}

	d := dial(t, n.ws, dialOpts{query: "?user=dave"})
	d.send(map[string]any{"type": "join", "channel": "hist.a", "history": 2, "id": "d"})
	if j := d.answer("d"); seqOf(j) != last || j["recovered"] != nil {
		t.Fatalf("join history 2: %v", j)
	}
	if got, _ := news(t, d, 2); fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("replay of the last 2: %v", got)
	}

	// Live after the replay, once, to every member.
	publishNews(t, nc, "hist.a", 6, 6)
	for name, m := range map[string]*wsClient{"a": a, "b": b, "c": c, "d": d} {
		if f := m.next("news"); f["n"] != float64(6) || seqOf(f) <= last {
			t.Fatalf("%s: live news %v after seq %d", name, f, last)
		}
	}

	// A client's chat is stored (durably, by its node) and comes back with
	// its seq.
	a.send(map[string]any{"type": "chat", "channel": "hist.a", "msg": "hi"})
	for name, m := range map[string]*wsClient{"a": a, "b": b} {
		if f := m.next("chat"); f["msg"] != "hi" || seqOf(f) <= last {
			t.Fatalf("%s: chat %v, want a seq after %d", name, f, last)
		}
	}

	// What the node counted.
	_, body := httpGet(t, n.http+"/metrics")
	for _, want := range []string{`pushgrid_recoveries_total{recovered="true"} 1`, `pushgrid_recoveries_total{recovered="false"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if v := metricValue(t, n, "pushgrid_history_stored_total"); v < 7 {
		t.Errorf("pushgrid_history_stored_total %v, want at least the 7 messages stored", v)
	}

	// The history method answers at most 1,000 messages at once; the rest
	// come when asked again since the last.
	publishNews(t, nc, "long.h", 1, 1100)
	var h map[string]any
	checkFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		h = apiCall(t, nc, "history", map[string]any{"channel": "long.h"})
		if msgs, _ := h["messages"].([]any); len(msgs) != 1000 {
			return fmt.Errorf("history of 1,100 messages gave %d, want the first 1,000", len(msgs))
		}
		return nil
	})
	msgs := h["messages"].([]any)
	after := msgs[len(msgs)-1].(map[string]any)["seq"]
	if rest := apiCall(t, nc, "history", map[string]any{"channel": "long.h", "since": after}); len(rest["messages"].([]any)) != 100 {
		t.Fatalf("history since the 1,000th: %d messages, want 100", len(rest["messages"].([]any)))
	}
	tail := apiCall(t, nc, "history", map[string]any{"channel": "long.h", "last": 3})["messages"].([]any)
	if len(tail) != 3 || tail[2].(map[string]any)["data"].(map[string]any)["n"] != float64(1100) {
		t.Fatalf("the last 3: %v", tail)
	}

	// A channel without history.
	a.send(map[string]any{"type": "join", "channel": "plain", "since": 3, "id": "p"})
	if j := a.answer("p"); j.str("type") != "joined" || j["recovered"] != false || j["seq"] != nil {
		t.Fatalf("since on a channel without history: %v", j)
	}
}

// TestHistoryReplayUnderLoad: joins with since while messages keep coming
// get every message after since exactly once, in order: the replay, then
// live, with no gap and no duplicate. Then payloads that are not objects.
func TestHistoryReplayUnderLoad(t *testing.T) {
	nodes := startCluster(t, 3, "--config", writeConfig(t, historyConfig))
	for _, n := range nodes {
		awaitHistory(t, n, 3)
	}
	nc := natsConnect(t, nodes[0].nats)
	first := dial(t, nodes[1].ws, dialOpts{query: "?user=first", buffer: 4096})
	first.send(map[string]any{"type": "join", "channel": "long.load", "id": 1})
	first.answer(float64(1))
	publishNews(t, nc, "long.load", 1, 1)
	_, start := news(t, first, 1)

	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 2; i <= total; i++ {
			if err := nc.Publish("push.chan.long.load", fmt.Appendf(nil, `{"type":"news","n":%d}`, i)); err != nil {
				return
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()
	var joiners []*wsClient
	for i := range 6 {
		time.Sleep(30 * time.Millisecond)
		c := dial(t, nodes[i%3].ws, dialOpts{query: fmt.Sprintf("?user=j%d", i), buffer: 4096})
		c.send(map[string]any{"type": "join", "channel": "long.load", "since": start, "id": "j"})
		if j := c.answer("j"); j["recovered"] != true {
			t.Fatalf("joiner %d: %v, want recovered", i, j)
		}
		joiners = append(joiners, c)
	}
	<-done
	for i, c := range joiners {
		if got := newsUntil(c, total, 5*time.Second); !slices.Equal(got, seqRange(2, total)) {
			t.Fatalf("joiner %d (on %s): got %d of %d messages, want n=2..%d once each in order; %s",
				i, c.welcome.str("node"), len(got), total-1, total, describeRun(got))
		}
	}

	// Payloads that are not JSON objects are stored and delivered as they
	// came, live and replayed, with no seq; a payload's own seq gives way
	// to the store's.
	payloads := []string{`[1,2]`, `"text"`, `7`, `{"type":"news","seq":999,"n":1}`, `{"type":"news","n":2}`}
	live := dial(t, nodes[2].ws, dialOpts{query: "?user=live"})
	live.send(map[string]any{"type": "join", "channel": "hist.payloads", "id": 1})
	live.answer(float64(1))
	for _, p := range payloads {
		if err := nc.Publish("push.chan.hist.payloads", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	checkPayloads := func(who string, c *wsClient) {
		t.Helper()
		var last uint64
		for _, p := range payloads {
			f := c.nextMatching("a payload", func(f frame) bool { return f[rawKey] != nil || f.str("type") == "news" })
			if p[0] != '{' {
				if f[rawKey] != p {
					t.Fatalf("%s: got %v, want %s as it was published", who, f, p)
				}
				continue
			}
			if seq := seqOf(f); seq <= last || seq == 999 {
				t.Fatalf("%s: %v after seq %d: want the store's seq, increasing", who, f, last)
			}
			last = seqOf(f)
		}
	}
	checkPayloads("live", live)
	replayed := dial(t, nodes[1].ws, dialOpts{query: "?user=replayed"})
	replayed.send(map[string]any{"type": "join", "channel": "hist.payloads", "history": 10, "id": 2})
	replayed.answer(float64(2))
	checkPayloads("replayed", replayed)
}

// historyRulesConfig has a short history and a short TTL, and a channel
// whose presence is off.
const historyRulesConfig = `
[[channels]]
pattern = "short.>"
history = 3
announce = false

[[channels]]
pattern = "brief.>"
history = 100
history_ttl = "1s"
announce = false

[[channels]]
pattern = "secret.>"
presence = false
`

// TestHistoryRetention: a channel keeps its last history messages, so a
// join since a message it dropped says recovered:false and replays what
// is left; messages expire after history_ttl; presence = false is
// forbidden.
func TestHistoryRetention(t *testing.T) {
	nodes := startCluster(t, 3, "--config", writeConfig(t, historyRulesConfig))
	for _, n := range nodes {
		awaitHistory(t, n, 3)
	}
	nc := natsConnect(t, nodes[0].nats)
	a := dial(t, nodes[1].ws, dialOpts{query: "?user=a"})
	a.send(map[string]any{"type": "join", "channel": "short.x", "id": 1})
	a.answer(float64(1))
	publishNews(t, nc, "short.x", 1, 5)
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, seqOf(a.next("news")))
	}

	// Message 1 is gone (3 kept): recovered false, and 3, 4, 5 replayed.
	b := dial(t, nodes[2].ws, dialOpts{query: "?user=b"})
	b.send(map[string]any{"type": "join", "channel": "short.x", "since": seqs[0], "id": "b"})
	if j := b.answer("b"); j["recovered"] != false || seqOf(j) != seqs[4] {
		t.Fatalf("join since a dropped message: %v", j)
	}
	if got, _ := news(t, b, 3); fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("replay after a dropped message: %v", got)
	}
	// Message 3 is kept: recovered true, 4 and 5 replayed.
	c := dial(t, nodes[0].ws, dialOpts{query: "?user=c"})
	c.send(map[string]any{"type": "join", "channel": "short.x", "since": seqs[2], "id": "c"})
	if j := c.answer("c"); j["recovered"] != true {
		t.Fatalf("join since a kept message: %v", j)
	}
	if got, _ := news(t, c, 2); fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("replay: %v", got)
	}

	// Expiry after history_ttl (1 s).
	publishNews(t, nc, "brief.x", 1, 2)
	checkFor(t, 5*time.Second, 200*time.Millisecond, func() error {
		h := apiCall(t, nc, "history", map[string]any{"channel": "brief.x"})
		if msgs, _ := h["messages"].([]any); len(msgs) != 2 {
			return fmt.Errorf("history before expiry: %v", h)
		}
		return nil
	})
	checkFor(t, 5*time.Second, 200*time.Millisecond, func() error {
		h := apiCall(t, nc, "history", map[string]any{"channel": "brief.x"})
		if msgs, _ := h["messages"].([]any); len(msgs) != 0 {
			return fmt.Errorf("history after the TTL: %v", h)
		}
		return nil
	})

	// presence = false
	a.send(map[string]any{"type": "presence", "channel": "secret.x", "id": "s"})
	if f := a.answer("s"); f.str("code") != "forbidden" {
		t.Fatalf("presence where it is off: %v", f)
	}
}

// TestPresenceAgrees: after joins and leaves on three nodes, presence asked
// of each node agrees within a second.
func TestPresenceAgrees(t *testing.T) {
	nodes := startCluster(t, 3)
	var clients []*wsClient
	for i, n := range nodes {
		for k := range 2 {
			c := dial(t, n.ws, dialOpts{query: fmt.Sprintf("?user=u%d", i)})
			c.join("lobby")
			if k == 1 && i == 2 {
				c.send(map[string]any{"type": "leave", "channel": "lobby"})
				c.next("left")
			}
			clients = append(clients, c)
		}
	}
	for i, n := range nodes {
		c := clients[2*i]
		checkFor(t, time.Second, 50*time.Millisecond, func() error {
			c.send(map[string]any{"type": "presence", "channel": "lobby", "id": "p"})
			f := c.answer("p")
			if f["count"] != float64(5) || len(f["users"].([]any)) != 3 {
				return fmt.Errorf("node %s: presence %v, want 5 connections of 3 users", n.name, f)
			}
			return nil
		})
	}
}

// TestHistoryFreshChannelFirstMessage: a message published right after a
// plain join's answer, on a history channel nobody on the joiner's node
// was in, reaches the joiner. The node's new subscription must have
// reached the stream leader's server before the join reads the channel's
// last seq: otherwise the leader republishes that message before it knows
// of the node, the joiner never gets it, and, with nothing after it,
// nothing shows the gap (a CI run saw TestHistoryReplayUnderLoad's first
// client wait for its first message in vain).
func TestHistoryFreshChannelFirstMessage(t *testing.T) {
	nodes := startCluster(t, 3, "--config", writeConfig(t, historyConfig))
	for _, n := range nodes {
		awaitHistory(t, n, 3)
	}
	nc := natsConnect(t, nodes[0].nats)
	var clients []*wsClient
	for i, n := range nodes {
		clients = append(clients, dial(t, n.ws, dialOpts{query: fmt.Sprintf("?user=u%d", i), buffer: 64}))
	}
	const rounds = 40
	for r := range rounds {
		channel := fmt.Sprintf("long.fresh%d", r)
		for _, c := range clients {
			c.send(map[string]any{"type": "join", "channel": channel, "id": r})
		}
		for _, c := range clients {
			c.answer(float64(r))
		}
		publishNews(t, nc, channel, r, r)
		for i, c := range clients {
			f := c.nextMatchingWithin(3*time.Second, fmt.Sprintf("round %d's message on %s", r, nodes[i].name),
				func(f frame) bool { return f.str("type") == "news" })
			if n, _ := f["n"].(float64); int(n) != r {
				t.Fatalf("%s: round %d: got %v", nodes[i].name, r, f)
			}
		}
	}
}

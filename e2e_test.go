package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestChatExactlyOnce: a chat reaches every member on every node exactly
// once, the sender included.
func TestChatExactlyOnce(t *testing.T) {
	nodes := startCluster(t, 3)
	var members []*wsClient
	for i, n := range nodes {
		for j := 0; j < 2; j++ {
			c := dial(t, n.ws, dialOpts{query: fmt.Sprintf("?user=u%d%d", i, j)})
			c.join("room")
			members = append(members, c)
		}
	}
	awaitInterest(t, nodes, "room", 3)
	members[0].send(map[string]any{"type": "chat", "channel": "room", "msg": map[string]any{"text": "one"}})
	members[5].send(map[string]any{"type": "chat", "channel": "room", "msg": "two"})
	for _, m := range members {
		// The two chats come from different nodes, in either order.
		got := map[string]frame{}
		for len(got) < 2 {
			f := m.next("chat")
			if _, dup := got[f.str("user")]; dup {
				t.Fatalf("%s got a chat twice: %v", m.user(), f)
			}
			got[f.str("user")] = f
		}
		if one := got["u00"]; one.str("channel") != "room" || one["msg"].(map[string]any)["text"] != "one" {
			t.Fatalf("chat frame %v", one)
		}
		if two := got["u21"]; two["msg"] != "two" {
			t.Fatalf("chat frame %v", two)
		}
	}
	for _, m := range members {
		m.expectNone("chat", 150*time.Millisecond)
	}
	// A disconnect leaves the channel: members on every node are told.
	_ = members[3].conn.WriteClose(1000, nil)
	for _, i := range []int{0, 2, 4} {
		members[i].nextWhere("control", func(f frame) bool { return f.str("user") == "u11" && f.str("msg") == "left" })
	}
}

// TestBackendSubjects: channel, user, connection and broadcast subjects,
// published by a NATS client on another node, delivered byte for byte.
func TestBackendSubjects(t *testing.T) {
	nodes := startCluster(t, 3)
	alice1 := dial(t, nodes[0].ws, dialOpts{query: "?user=alice"})
	alice2 := dial(t, nodes[1].ws, dialOpts{query: "?user=alice"})
	bob := dial(t, nodes[0].ws, dialOpts{query: "?user=bob"})
	bob.join("news.eu")
	awaitInterest(t, nodes, "news.eu", 1)
	nc := natsConnect(t, nodes[2].nats)
	s := nodes[2].broker.Subjects()

	pub := func(subject, payload string) {
		t.Helper()
		if err := nc.Publish(subject, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
	}
	pub(s.Channel("news.eu"), `{"type":"news","n":1}`)
	bob.nextWhere("news", func(f frame) bool { return f["n"] == 1.0 })

	// User subjects are node-wide wildcards: no interest to wait for.
	pub(s.User("alice"), `{"type":"dm","n":2}`)
	alice1.next("dm")
	alice2.next("dm")
	bob.expectNone("dm", 100*time.Millisecond)

	pub(s.Conn(alice2.id()), `{"type":"only","n":3}`)
	alice2.next("only")
	alice1.expectNone("only", 100*time.Millisecond)

	pub(s.All(), `{"type":"all","n":4}`)
	for _, c := range []*wsClient{alice1, alice2, bob} {
		c.next("all")
	}
}

// TestEvents: connect, join, leave and disconnect events reach a backend
// on another node with the fields of PROTOCOL.md.
func TestEvents(t *testing.T) {
	nodes := startCluster(t, 3)
	nc := natsConnect(t, nodes[1].nats)
	events := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe("push.events.>", events); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	// The subscription must reach node 1 before the client acts.
	awaitSubject(t, nodes[0].broker.Server(), "push.events.connect", 1)
	c := dial(t, nodes[0].ws, dialOpts{query: "?user=eve"})
	c.join("lobby")
	c.send(map[string]any{"type": "leave", "channel": "lobby"})
	c.next("left")
	_ = c.conn.WriteClose(1000, nil)

	want := []struct{ subject, extra string }{
		{"push.events.connect", "remote"},
		{"push.events.join.lobby", "channel"},
		{"push.events.leave.lobby", "channel"},
		{"push.events.disconnect", "remote"},
	}
	for _, w := range want {
		select {
		case m := <-events:
			if m.Subject != w.subject {
				t.Fatalf("event on %s, want %s", m.Subject, w.subject)
			}
			var ev map[string]string
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev["conn"] != c.id() || ev["user"] != "eve" || ev["node"] != "n1" || ev[w.extra] == "" {
				t.Fatalf("%s: %v", w.subject, ev)
			}
			if _, err := time.Parse(time.RFC3339, ev["at"]); err != nil {
				t.Fatalf("at: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", w.subject)
		}
	}
}

// TestRequestReply: a custom frame with an id is a NATS request with the
// sender's identity in headers; the reply, no_handler and timeout come back.
func TestRequestReply(t *testing.T) {
	nodes := startCluster(t, 3, "--request-timeout", "300ms")
	backend := natsConnect(t, nodes[2].nats)
	backendSubscribe(t, backend, "push.recv.order", func(m *nats.Msg) {
		reply := fmt.Sprintf(`{"user":%q,"conn":%q,"node":%q,"got":%s}`,
			m.Header.Get("Push-User"), m.Header.Get("Push-Conn"), m.Header.Get("Push-Node"), m.Data)
		_ = m.Respond([]byte(reply))
	}, nodes[0])
	notes := make(chan *nats.Msg, 4)
	backendSubscribe(t, backend, "push.recv.note", func(m *nats.Msg) { notes <- m }, nodes[0])
	backendSubscribe(t, backend, "push.recv.silent", func(*nats.Msg) {}, nodes[0])
	c := dial(t, nodes[0].ws, dialOpts{query: "?user=zoe"})

	c.send(map[string]any{"type": "order", "id": "o-1", "item": 7})
	r := c.next("reply")
	msg := r["msg"].(map[string]any)
	if r["id"] != "o-1" || msg["user"] != "zoe" || msg["conn"] != c.id() || msg["node"] != "n1" {
		t.Fatalf("reply %v", r)
	}
	if got := msg["got"].(map[string]any); got["item"] != 7.0 || got["type"] != "order" {
		t.Fatalf("backend got %v", got)
	}

	c.send(map[string]any{"type": "note", "text": "fire and forget"})
	select {
	case m := <-notes:
		if m.Header.Get("Push-User") != "zoe" || !bytes.Contains(m.Data, []byte("fire and forget")) {
			t.Fatalf("note %v %s", m.Header, m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no note")
	}

	c.send(map[string]any{"type": "nobody", "id": 5})
	if e := c.next("error"); e["code"] != "no_handler" || e["id"] != 5.0 {
		t.Fatalf("%v", e)
	}
	c.send(map[string]any{"type": "silent", "id": 6})
	if e := c.next("error"); e["code"] != "timeout" || e["id"] != 6.0 {
		t.Fatalf("%v", e)
	}
	c.roundTrip()
}

// TestErrorCodes: every error code of PROTOCOL.md, each leaving the
// connection open and changing nothing.
func TestErrorCodes(t *testing.T) {
	nodes := startCluster(t, 3, "--max-channels", "2", "--request-timeout", "200ms")
	c := dial(t, nodes[0].ws, dialOpts{query: "?user=max"})
	other := dial(t, nodes[0].ws, dialOpts{query: "?user=obs"})
	other.join("a")
	backendSubscribe(t, natsConnect(t, nodes[1].nats), "push.recv.slow", func(*nats.Msg) {}, nodes[0])
	c.join("a")
	c.join("b")
	cases := []struct {
		send string
		code string
	}{
		{`not json`, "bad_request"},
		{`[1,2,3]`, "bad_request"},
		{`{"channel":"a","id":1}`, "bad_request"},
		{`{"type":"join","channel":"a","user":"not valid","id":2}`, "bad_request"},
		{`{"type":"join","channel":"a","user":"someone_else","id":3}`, "bad_request"},
		{`{"type":"join","channel":"a..b","id":4}`, "bad_channel"},
		{`{"type":"chat","channel":"x y","msg":1,"id":5}`, "bad_channel"},
		{`{"type":"leave","channel":"a.>","id":6}`, "bad_channel"},
		{`{"type":"join","channel":"@obs","id":7}`, "forbidden"},
		{`{"type":"join","channel":"c","id":8}`, "too_many_channels"},
		{`{"type":"chat","channel":"c","msg":1,"id":9}`, "too_many_channels"},
		{`{"type":"nobody_home","id":10}`, "no_handler"},
		{`{"type":"slow","id":11}`, "timeout"},
	}
	// One client through every case (no subtests: c belongs to this t), so
	// the end can check that none of them changed it.
	for _, k := range cases {
		c.sendRaw(k.send)
		e := c.next("error")
		if e["code"] != k.code || e.str("msg") == "" {
			t.Fatalf("sent %s: got %v, want code %s", k.send, e, k.code)
		}
		var sent map[string]any
		if json.Unmarshal([]byte(k.send), &sent) == nil && sent["id"] != nil && e["id"] != sent["id"] {
			t.Fatalf("sent %s: id not echoed in %v", k.send, e)
		}
		c.roundTrip()
	}
	// Nothing changed: still in a and b only, still user max.
	c.send(map[string]any{"type": "chat", "channel": "a", "msg": "still here"})
	if f := other.nextWhere("chat", func(f frame) bool { return f["msg"] == "still here" }); f.str("user") != "max" {
		t.Fatalf("%v", f)
	}
	other.expectNone("control", 100*time.Millisecond)

	// rate_limited, on a node that allows little.
	slowNode := startTestNode(t, "r1", nil, "--rate", "1", "--burst", "2")
	r := dial(t, slowNode.ws, dialOpts{})
	for i := 0; i < 3; i++ {
		r.send(map[string]any{"type": "ping", "id": i})
	}
	r.next("pong")
	r.next("pong")
	if e := r.next("error"); e["code"] != "rate_limited" || e["id"] != 2.0 {
		t.Fatalf("%v", e)
	}
	// A token comes back within a second: then a ping gets its pong. The
	// poll is slow enough that the refusals meanwhile stay far from the
	// ten in a row that close the connection.
	checkFor(t, 3*time.Second, 250*time.Millisecond, func() error {
		r.send(map[string]any{"type": "ping", "id": "again"})
		if f := r.answer("again"); f.str("type") != "pong" {
			return fmt.Errorf("ping answered %v", f)
		}
		return nil
	})
}

// TestCloseCodes: 1009 for a frame over the limit, 1003 for a binary frame,
// 1008 after ten rate-limited frames in a row.
func TestCloseCodes(t *testing.T) {
	n := startTestNode(t, "c1", nil, "--max-message-bytes", "1024", "--rate", "1", "--burst", "1")
	big := dial(t, n.ws, dialOpts{})
	big.sendRaw(`{"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`)
	if code := big.closeCode(5 * time.Second); code != 1009 {
		t.Fatalf("oversized frame: close %d, want 1009", code)
	}
	bin := dial(t, n.ws, dialOpts{})
	if err := bin.conn.WriteMessage(gws.OpcodeBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if code := bin.closeCode(5 * time.Second); code != 1003 {
		t.Fatalf("binary frame: close %d, want 1003", code)
	}
	flood := dial(t, n.ws, dialOpts{})
	flood.send(map[string]any{"type": "ping"}) // the one token
	for i := 0; i < 10; i++ {
		flood.send(map[string]any{"type": "ping"})
	}
	if code := flood.closeCode(5 * time.Second); code != 1008 {
		t.Fatalf("rate limit: close %d, want 1008", code)
	}
}

// TestSlowConsumer: one member stops reading while another in the same
// channel receives all of 4,000 messages of 4 KB; the slow one is closed
// with 4001 and nobody else is affected.
func TestSlowConsumer(t *testing.T) {
	n := startTestNode(t, "s1", nil)
	fast := dial(t, n.ws, dialOpts{buffer: 5000})
	slow := dial(t, n.ws, dialOpts{})
	fast.join("firehose")
	slow.join("firehose")
	slow.hold()
	nc := natsConnect(t, n.nats)
	payload := `{"type":"blob","pad":"` + strings.Repeat("z", 4000) + `","n":%d}`
	// Published in windows of 100 that the fast member reads before the
	// next: it keeps up by construction; the slow one reads nothing.
	for i := 0; i < 4000; i++ {
		if err := nc.Publish("push.chan.firehose", []byte(fmt.Sprintf(payload, i))); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			_ = nc.Flush()
			for j := i - 99; j <= i; j++ {
				if f := fast.next("blob"); f["n"] != float64(j) {
					t.Fatalf("fast member got message %v, want %d", f["n"], j)
				}
			}
		}
	}
	slow.resume()
	if code := slow.closeCode(10 * time.Second); code != 4001 {
		t.Fatalf("slow member: close %d, want 4001", code)
	}
	fast.roundTrip()
	if got := n.hub.Stats().SlowConsumers; got != 1 {
		t.Fatalf("slow consumers counted: %d", got)
	}
}

// TestOneSubscriptionPerChannel: 1,000 members of one channel on a node hold
// exactly one NATS subscription there, and none once they have all left.
func TestOneSubscriptionPerChannel(t *testing.T) {
	n := startTestNode(t, "i1", nil)
	ns := n.broker.Server()
	base := ns.NumSubscriptions()
	clients := make([]*wsClient, 1000)
	for i := range clients {
		clients[i] = dial(t, n.ws, dialOpts{query: fmt.Sprintf("?user=crowd%d", i), buffer: 4})
		clients[i].send(map[string]any{"type": "join", "channel": "crowd"})
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_ = n.broker.Conn().Flush()
		if _, chans := n.hub.Counts(); chans != 1 {
			return fmt.Errorf("%d channels", chans)
		}
		if got := ns.NumSubscriptions(); got != base+1 {
			return fmt.Errorf("server holds %d subscriptions, want %d", got, base+1)
		}
		return nil
	})
	for _, c := range clients {
		_ = c.conn.WriteClose(1000, nil)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_ = n.broker.Conn().Flush()
		if got := ns.NumSubscriptions(); got != base {
			return fmt.Errorf("server holds %d subscriptions, want %d", got, base)
		}
		return nil
	})
}

// TestHTTPEndpoints: health, readiness, metrics, the demo page, and a
// refused upgrade answered with a JSON error.
func TestHTTPEndpoints(t *testing.T) {
	n := startTestNode(t, "h1", nil)
	c := dial(t, n.ws, dialOpts{})
	c.join("m")
	get := func(path string) (int, string) {
		t.Helper()
		return httpGet(t, n.http+path)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	code, body := get("/metrics")
	for _, m := range []string{"pushgrid_connections 1", "pushgrid_channels 1", "pushgrid_messages_received_total",
		"pushgrid_messages_delivered_total", "pushgrid_slow_consumers_total 0", `pushgrid_errors_total{code="bad_channel"} 0`,
		"go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics (%d) lack %s", code, m)
		}
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, `from "/pushgrid.js"`) {
		t.Fatalf("demo page %d", code)
	}
	if code, body := get("/ws?user=bad%20name"); code != 400 || !strings.Contains(body, `"error"`) {
		t.Fatalf("bad user: %d %s", code, body)
	}
	if _, err := tryDial(t, n.ws, dialOpts{query: "?user=a*b"}); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("dial with a bad user: %v", err)
	}
}

// TestPubCommand: `pushgrid pub` to a channel, end to end, and its errors.
func TestPubCommand(t *testing.T) {
	nodes := startCluster(t, 3)
	c := dial(t, nodes[0].ws, dialOpts{})
	c.join("alerts")
	awaitInterest(t, nodes, "alerts", 1)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"pub", "--server", nodes[2].nats, "--channel", "alerts", `{"type":"alert","level":3}`},
		strings.NewReader(""), &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	if f := c.next("alert"); f["level"] != 3.0 {
		t.Fatalf("%v", f)
	}
	err = run(context.Background(), []string{"pub", "--server", nodes[1].nats, "--channel", "alerts", "-"},
		strings.NewReader(`{"type":"alert","level":4}`), &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	c.nextWhere("alert", func(f frame) bool { return f["level"] == 4.0 })

	errOut.Reset()
	if err := run(context.Background(), []string{"pub", "--server", nodes[0].nats, "--channel", "bad..name", "{}"}, nil, &out, &errOut); err == nil {
		t.Fatal("pub accepted an invalid channel")
	} else if !strings.Contains(err.Error(), "invalid channel name") {
		t.Fatalf("error %v", err)
	}
	if err := run(context.Background(), []string{"pub", "--server", "nats://127.0.0.1:1", "--all", "{}"}, nil, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "no server answers") {
		t.Fatalf("pub with no server: %v", err)
	}
}

// TestWriteDeadlineCleared: after a client fell behind and caught up (so
// its writes once blocked under a deadline), it keeps receiving long after
// that deadline would have passed.
func TestWriteDeadlineCleared(t *testing.T) {
	// The timeout is a second, not less: a client of a busy test process
	// (-race, parallel packages) may read nothing for a few hundred ms.
	n := startTestNode(t, "w1", nil, "--write-timeout", "1s", "--queue-bytes", "67108864")
	c := dial(t, n.ws, dialOpts{buffer: 1000})
	c.join("late")
	nc := natsConnect(t, n.nats)
	c.hold()
	delivered := metricValue(t, n, "pushgrid_messages_delivered_total")
	big := `{"type":"big","pad":"` + strings.Repeat("b", 60000) + `","n":%d}`
	const msgs = 250 // 15 MB: more than the socket buffers take
	for i := 0; i < msgs; i++ {
		_ = nc.Publish("push.chan.late", []byte(fmt.Sprintf(big, i)))
	}
	_ = nc.Flush()
	// Once the node has handed all 15 MB to a connection that reads
	// nothing, its writer is blocked on the full socket.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := metricValue(t, n, "pushgrid_messages_delivered_total") - delivered; got < msgs {
			return fmt.Errorf("%.0f of %d messages handed to the connection", got, msgs)
		}
		return nil
	})
	c.resume()
	for i := 0; i < msgs; i++ {
		c.next("big")
	}
	// What is under test: the client stays quiet until a deadline set
	// while the writer was blocked would have passed.
	time.Sleep(1200 * time.Millisecond)
	_ = nc.Publish("push.chan.late", []byte(`{"type":"after"}`))
	c.next("after")
}

// TestExternalNATS: with --nats-url, nodes embed nothing and the same
// protocol runs over an existing NATS deployment.
func TestExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	a := startTestNode(t, "x1", nil, "--nats-url", ns.ClientURL())
	b := startTestNode(t, "x2", nil, "--nats-url", ns.ClientURL())
	if a.broker.Server() != nil {
		t.Fatal("a node with --nats-url embedded a server")
	}
	awaitNodes(t, a, 2)
	ca := dial(t, a.ws, dialOpts{query: "?user=ext"})
	cb := dial(t, b.ws, dialOpts{})
	ca.join("shared")
	cb.join("shared")
	awaitSubject(t, ns, "push.chan.shared", 2)
	ca.send(map[string]any{"type": "chat", "channel": "shared", "msg": "over external nats"})
	cb.nextWhere("chat", func(f frame) bool { return f["msg"] == "over external nats" })
	nc := natsConnect(t, ns.ClientURL())
	_ = nc.Publish("push.user.ext", []byte(`{"type":"dm"}`))
	ca.next("dm")
}

// TestJoinRules: identity from the first join, ids echoed in joined and
// left, joining twice, and the implicit join of a chat, on three nodes.
func TestJoinRules(t *testing.T) {
	nodes := startCluster(t, 3)
	watcher := dial(t, nodes[2].ws, dialOpts{query: "?user=w"})
	watcher.join("club")
	c := dial(t, nodes[0].ws, dialOpts{})
	if !strings.HasPrefix(c.user(), "anon-") || c.welcome.str("node") != "n1" || c.id() == "" {
		t.Fatalf("welcome %v", c.welcome)
	}
	awaitInterest(t, nodes, "club", 1)
	c.send(map[string]any{"type": "join", "channel": "club", "user": "kim", "id": "j1"})
	if f := c.next("joined"); f["id"] != "j1" || f.str("channel") != "club" {
		t.Fatalf("%v", f)
	}
	c.nextWhere("control", func(f frame) bool { return f.str("user") == "kim" })
	watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "kim" && f.str("msg") == "joined" })
	// Twice: joined again, no second control frame.
	c.send(map[string]any{"type": "join", "channel": "club", "id": 2})
	if f := c.next("joined"); f["id"] != 2.0 {
		t.Fatalf("%v", f)
	}
	c.send(map[string]any{"type": "leave", "channel": "club", "id": "l1"})
	if f := c.next("left"); f["id"] != "l1" {
		t.Fatalf("%v", f)
	}
	if f := watcher.next("control"); f.str("msg") != "left" || f.str("user") != "kim" {
		t.Fatalf("watcher got %v, want only kim's left", f)
	}
	// A chat to a channel not joined joins it first.
	c.send(map[string]any{"type": "chat", "channel": "club", "msg": "back"})
	c.next("joined")
	watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "kim" && f.str("msg") == "joined" })
	if f := watcher.next("chat"); f["msg"] != "back" || f.str("user") != "kim" {
		t.Fatalf("%v", f)
	}
}

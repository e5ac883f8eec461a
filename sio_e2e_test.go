package main

// End-to-end tests of PROTOCOL.md §8 with the real socket.io-client, driven
// by testdata/socketio/client.mjs.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/socketio"
)

// sioBasics is the scenario every transport must pass: the welcome event,
// join with an ack, chat as an event, what backends publish (JSON objects,
// text that is not JSON, other JSON) as events,
// emit("message", ...) as a request answered to its ack, a refusal to its
// ack, and leaving.
func sioBasics(url string, transports []string) sioScenario {
	opts := map[string]any{"auth": map[string]any{"user": "sio1"}}
	if transports != nil {
		opts["transports"] = transports
	}
	return sioScenario{URL: url, Options: opts, Steps: []sioStep{
		{Do: "connect"},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "welcome", "args": []any{map[string]any{"type": "welcome", "user": "sio1"}}}},
		{Do: "emit", Event: "join", Args: []any{"room"}, Ack: "j1"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j1", "args": []any{map[string]any{"type": "joined", "channel": "room"}}}},
		{Do: "emit", Event: "chat", Args: []any{"room", "hi"}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "chat", "args": []any{map[string]any{"channel": "room", "user": "sio1", "msg": "hi"}}}},
		{Do: "sync", Label: "publish"},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "news", "args": []any{map[string]any{"type": "news", "n": 1.0}}}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "message", "args": []any{"plain text"}}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "message", "args": []any{[]any{1.0, 2.0}}}},
		{Do: "emit", Event: "message", Args: []any{map[string]any{"type": "order", "item": "tea"}}, Ack: "o1"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "o1", "args": []any{map[string]any{"type": "reply", "msg": map[string]any{"ok": true, "item": "tea"}}}}},
		{Do: "emit", Event: "join", Args: []any{"@bob"}, Ack: "j2"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j2", "args": []any{map[string]any{"type": "error", "code": "forbidden"}}}},
		{Do: "emit", Event: "leave", Args: []any{"room"}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "left", "args": []any{map[string]any{"type": "left", "channel": "room"}}}},
		{Do: "disconnect"},
	}}
}

func TestSocketIOTransports(t *testing.T) {
	for _, tc := range []struct {
		name       string
		transports []string
	}{
		{"polling", []string{"polling"}},
		{"websocket", []string{"websocket"}},
		{"upgrade", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startTestNode(t, "n1", nil)
			nc := natsConnect(t, n.nats)
			backendSubscribe(t, nc, "push.recv.order", func(m *nats.Msg) {
				_ = m.Respond([]byte(`{"ok":true,"item":"tea"}`))
			}, n)
			watcher := dial(t, n.ws, dialOpts{query: "?user=watcher"})
			watcher.join("room")

			c := startSIOClient(t, tc.name, sioBasics("http://"+strings.TrimPrefix(n.http, "http://"), tc.transports))
			c.next("sync", nil)
			// JSON objects to the channel; the rest to the user (the native
			// watcher in the channel takes JSON only).
			for subject, p := range map[string]string{"push.chan.room": `{"type":"news","n":1}`, "push.user.sio1": `plain text`} {
				if err := nc.Publish(subject, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Publish("push.user.sio1", []byte(`[1,2]`)); err != nil {
				t.Fatal(err)
			}
			c.release()
			if code := c.wait(15 * time.Second); code != 0 {
				t.Fatalf("driver exit %d", code)
			}
			watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "sio1" && f.str("msg") == "joined" })
			if f := watcher.next("chat"); f["msg"] != "hi" {
				t.Fatalf("watcher got %v", f)
			}
			watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "sio1" && f.str("msg") == "left" })
			for _, l := range c.all() {
				if l.Ev == "connect_error" || (l.Ev == "event" && l.Name == "error") {
					t.Errorf("unexpected %s", l)
				}
			}
		})
	}
}

// TestSocketIOAnyNode: three nodes behind a round-robin proxy with no
// stickiness, so a session's polls, posts and upgrade land on every node;
// each transport works through it, with no "Session ID unknown", no
// connect_error, nothing lost or doubled.
func TestSocketIOAnyNode(t *testing.T) {
	nodes := startCluster(t, 3)
	proxy := proxyOver(t, nodes)
	nc := natsConnect(t, nodes[1].nats)
	backendSubscribe(t, nc, "push.recv.order", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"ok":true,"item":"tea"}`))
	}, nodes[0])
	for _, n := range nodes {
		awaitSubject(t, n.broker.Server(), "push.recv.order", 1)
	}
	for _, tc := range []struct {
		name       string
		transports []string
	}{
		{"polling", []string{"polling"}},
		{"websocket", []string{"websocket"}},
		{"upgrade", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			watcher := dial(t, nodes[2].ws, dialOpts{query: "?user=watcher"})
			watcher.join("room")
			awaitInterest(t, nodes, "room", 1)
			c := startSIOClient(t, tc.name, sioBasics("http://"+proxy.addr(), tc.transports))
			owner := socketio.OwnerOf(c.next("connect", nil).SID)
			c.next("sync", nil)
			// The client's join reached its session's owner: wait until
			// every node routes the channel there too before publishing.
			memberNodes := 2
			if owner == nodes[2].name {
				memberNodes = 1 // the watcher's node
			}
			awaitInterest(t, nodes, "room", memberNodes)
			for subject, p := range map[string]string{"push.chan.room": `{"type":"news","n":1}`, "push.user.sio1": `plain text`} {
				if err := nc.Publish(subject, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Publish("push.user.sio1", []byte(`[1,2]`)); err != nil {
				t.Fatal(err)
			}
			c.release()
			if code := c.wait(20 * time.Second); code != 0 {
				t.Fatalf("driver exit %d", code)
			}
			counts := map[string]int{}
			for _, l := range c.all() {
				switch {
				case l.Ev == "connect_error" || l.Ev == "fail":
					t.Errorf("unexpected %s", l)
				case l.Ev == "event":
					counts[l.Name]++
				}
			}
			for name, want := range map[string]int{"welcome": 1, "chat": 1, "news": 1, "message": 2, "left": 1} {
				if counts[name] != want {
					t.Errorf("%d %q events, want %d (all: %v)", counts[name], name, want, counts)
				}
			}
			if f := watcher.next("chat"); f["msg"] != "hi" || f.str("user") != "sio1" {
				t.Fatalf("watcher got %v", f)
			}
			if total := proxy.counts(); tc.transports == nil || tc.transports[0] == "polling" {
				spread := 0
				for _, n := range total {
					if n > 0 {
						spread++
					}
				}
				if spread < 3 {
					t.Fatalf("requests per node %v: the proxy did not spread the session", total)
				}
			}
		})
	}
}

// TestSocketIOHeartbeat: sessions idle through several ping intervals and
// stay connected, polling and upgraded alike; one that stops answering
// pings is dropped within ping_interval + ping_timeout and leaves its
// channels.
func TestSocketIOHeartbeat(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--socketio-ping-interval", "200ms", "--socketio-ping-timeout", "300ms")
	watcher := dial(t, n.ws, dialOpts{query: "?user=watcher"})
	watcher.join("hb")
	url := "http://" + strings.TrimPrefix(n.http, "http://")
	idle := func(user string, transports []string) sioScenario {
		opts := map[string]any{"auth": map[string]any{"user": user}}
		if transports != nil {
			opts["transports"] = transports
		}
		return sioScenario{URL: url, Options: opts, Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{"hb"}, Ack: "j"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j"}},
			{Do: "wait", MS: 1200}, // six ping intervals
			{Do: "emit", Event: "ping", Ack: "p"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "p", "args": []any{map[string]any{"type": "pong"}}}},
			{Do: "disconnect"},
		}}
	}
	polling := startSIOClient(t, "polling", idle("idle-polling", []string{"polling"}))
	upgraded := startSIOClient(t, "upgraded", idle("idle-upgraded", nil))
	silent := startSIOClient(t, "silent", sioScenario{URL: url, Options: map[string]any{"auth": map[string]any{"user": "silent"}},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{"hb"}, Ack: "j"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j"}},
			{Do: "stop_pongs"},
			{Do: "expect", Match: map[string]any{"ev": "disconnect"}, Timeout: 5000},
		}})
	for name, c := range map[string]*sioClient{"polling": polling, "upgraded": upgraded} {
		if code := c.wait(10 * time.Second); code != 0 {
			t.Fatalf("%s: driver exit %d", name, code)
		}
		for _, l := range c.all() {
			if l.Ev == "disconnect" && l.Reason != "io client disconnect" {
				t.Fatalf("%s dropped while idle: %s", name, l)
			}
		}
	}
	if code := silent.wait(10 * time.Second); code != 0 {
		t.Fatalf("silent: driver exit %d", code)
	}
	// The server dropped it: the others are told it left.
	watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "silent" && f.str("msg") == "left" })
}

// TestSocketIOOwnerDies: the node that owns a session is killed; the client
// reconnects, through the proxy, to another node and joins again.
func TestSocketIOOwnerDies(t *testing.T) {
	nodes := startCluster(t, 3, "--socketio-ping-interval", "300ms", "--socketio-ping-timeout", "300ms", "--drain", "0s")
	proxy := proxyOver(t, nodes)
	c := startSIOClient(t, "client", sioScenario{URL: "http://" + proxy.addr(),
		Options: map[string]any{"auth": map[string]any{"user": "phoenix"}, "reconnection": true,
			"reconnectionDelay": 100, "reconnectionDelayMax": 500},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{"ash"}, Ack: "j1"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j1"}},
			{Do: "sync", Label: "kill"},
			{Do: "expect", Match: map[string]any{"ev": "disconnect"}, Timeout: 5000},
			{Do: "expect", Match: map[string]any{"ev": "connect"}, Timeout: 10000},
			{Do: "emit", Event: "join", Args: []any{"ash"}, Ack: "j2"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j2", "args": []any{map[string]any{"type": "joined"}}}},
			{Do: "sync", Label: "publish"},
			{Do: "expect", Match: map[string]any{"ev": "event", "name": "news"}},
			{Do: "disconnect"},
		}})
	owner := socketio.OwnerOf(c.next("connect", nil).SID)
	c.next("sync", nil)
	var alive []*testNode
	for _, n := range nodes {
		if n.name == owner {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = n.Shutdown(ctx)
			cancel()
			continue
		}
		alive = append(alive, n)
	}
	if len(alive) != 2 {
		t.Fatalf("owner %q is not one of the nodes", owner)
	}
	c.release()
	again := c.next("connect", nil)
	if o := socketio.OwnerOf(again.SID); o == owner || o == "" {
		t.Fatalf("reconnected to %q", o)
	}
	c.next("sync", nil)
	awaitInterest(t, alive, "ash", 1)
	nc := natsConnect(t, alive[0].nats)
	if err := nc.Publish("push.chan.ash", []byte(`{"type":"news"}`)); err != nil {
		t.Fatal(err)
	}
	c.release()
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("driver exit %d", code)
	}
	for _, l := range c.all() {
		if l.Ev == "connect_error" {
			t.Errorf("unexpected %s", l)
		}
	}
}

// TestSocketIOAuth: with auth.mode jwt, the CONNECT packet's auth payload
// carries the token; a bad one is a connect_error with the reason, and a
// good one names the user whatever auth.user says.
func TestSocketIOAuth(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--auth", "jwt", "--auth-secret", testSecret)
	url := "http://" + strings.TrimPrefix(n.http, "http://")
	good := signed(t, jwt.MapClaims{"sub": "ada", "exp": time.Now().Add(time.Hour).Unix()})
	ok := startSIOClient(t, "good", sioScenario{URL: url, Options: map[string]any{"auth": map[string]any{"token": good, "user": "mallory"}},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "expect", Match: map[string]any{"ev": "event", "name": "welcome", "args": []any{map[string]any{"user": "ada"}}}},
			{Do: "disconnect"},
		}})
	bad := startSIOClient(t, "bad", sioScenario{URL: url, Options: map[string]any{"auth": map[string]any{"token": "forged"}},
		Steps: []sioStep{{Do: "connect"}}})
	if code := ok.wait(10 * time.Second); code != 0 {
		t.Fatalf("good token: driver exit %d", code)
	}
	bad.wait(10 * time.Second)
	l := bad.next("connect_error", nil)
	if !strings.HasPrefix(l.Message, "invalid token: ") {
		t.Fatalf("connect_error %s", l)
	}
}

// TestSocketIOCORS: a page of an allowed origin gets CORS answers with
// credentials, preflight included; another origin gets 403.
func TestSocketIOCORS(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--origin", "https://app.example")
	do := func(method, origin string) *http.Response {
		req, err := http.NewRequest(method, n.http+"/socket.io/?EIO=4&transport=polling", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, method := range []string{http.MethodOptions, http.MethodGet} {
		resp := do(method, "https://app.example")
		if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("%s: %d %v", method, resp.StatusCode, resp.Header)
		}
		if method == http.MethodOptions && (resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Headers") != "content-type") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
		if method == http.MethodGet && resp.StatusCode != http.StatusOK {
			t.Fatalf("handshake: %d", resp.StatusCode)
		}
		if resp := do(method, "https://evil.example"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%s from another origin: %d %v", method, resp.StatusCode, resp.Header)
		}
	}
}

// TestSocketIONativeRules: the native protocol's rules hold for Socket.IO
// clients: channel rules answer forbidden to the ack, a flood is
// rate_limited and then closed, and a token's expiry ends the session
// with a disconnect the client does not retry on its own.
func TestSocketIONativeRules(t *testing.T) {
	cfg := writeConfig(t, rulesConfig)
	n := startTestNode(t, "n1", nil, "--config", cfg, "--auth", "jwt", "--auth-secret", testSecret,
		"--auth-leeway", "0s", "--rate", "5", "--burst", "5")
	url := "http://" + strings.TrimPrefix(n.http, "http://")
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	token := signed(t, jwt.MapClaims{"sub": "rita", "exp": exp.Unix(), "channels": []string{"paid.gold.*"}})
	steps := []sioStep{
		{Do: "connect"},
		{Do: "emit", Event: "join", Args: []any{"paid.gold.x"}, Ack: "claim-ok"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "claim-ok", "args": []any{map[string]any{"type": "joined"}}}},
		{Do: "emit", Event: "join", Args: []any{"paid.silver.x"}, Ack: "claim-no"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "claim-no", "args": []any{map[string]any{"code": "forbidden"}}}},
		{Do: "emit", Event: "chat", Args: []any{"alerts.x", "fake"}, Ack: "nobody"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "nobody", "args": []any{map[string]any{"code": "forbidden"}}}},
		{Do: "wait", MS: 1100}, // the bucket refills
	}
	// Past the burst: rate_limited, answered to the acks.
	for i := 0; i < 8; i++ {
		steps = append(steps, sioStep{Do: "emit", Event: "ping", Ack: fmt.Sprintf("p%d", i)})
	}
	steps = append(steps,
		sioStep{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "p7", "args": []any{map[string]any{"code": "rate_limited"}}}},
		// The token expires: the server sends the client away for good.
		sioStep{Do: "expect", Match: map[string]any{"ev": "disconnect", "reason": "io server disconnect"}, Timeout: 8000},
	)
	c := startSIOClient(t, "rules", sioScenario{URL: url, Options: map[string]any{"auth": map[string]any{"token": token}}, Steps: steps})
	if code := c.wait(15 * time.Second); code != 0 {
		t.Fatalf("driver exit %d", code)
	}
	if time.Now().Before(exp) {
		t.Fatalf("disconnected before the token's exp (%v)", exp)
	}
}

// TestSocketIORelayedPollCancelled: a poll relayed to the session's owner
// whose client goes away is cancelled on the owner, so the client's next
// poll, through any node, is not refused as overlapping and gets the
// packets (here the server's ping) the abandoned one would have taken.
func TestSocketIORelayedPollCancelled(t *testing.T) {
	// The ping is due well after the abandoned poll's cancel reached the
	// owner, even on a loaded machine.
	nodes := startCluster(t, 2, "--socketio-ping-interval", "1500ms", "--socketio-ping-timeout", "3s")
	get := func(ctx context.Context, n *testNode, query string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.http+"/socket.io/?EIO=4&transport=polling"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	status, open, err := get(context.Background(), nodes[0], "")
	if err != nil || status != http.StatusOK || !strings.HasPrefix(open, `0{"sid":"`) {
		t.Fatalf("handshake: %d %q %v", status, open, err)
	}
	sid := strings.SplitN(strings.TrimPrefix(open, `0{"sid":"`), `"`, 2)[0]
	// A poll through the other node, abandoned before the first ping.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, _, err := get(ctx, nodes[1], "&sid="+sid); err == nil {
		t.Fatal("the poll answered before any packet was due")
	}
	cancel()
	time.Sleep(2 * time.Second) // the ping is due meanwhile
	status, body, err := get(context.Background(), nodes[1], "&sid="+sid)
	if err != nil || status != http.StatusOK || body != "2" {
		t.Fatalf("next poll: %d %q %v, want the ping", status, body, err)
	}
}

// TestSocketIOOwnerKilled: the node that owns a polling session is killed
// with SIGKILL; the polls that other nodes relay to it get "Session ID
// unknown" at once, and the client starts a new session on a node that
// is up and joins again.
func TestSocketIOOwnerKilled(t *testing.T) {
	nodes := startCluster(t, 2)
	p := startProcess(t, "k3", []string{nodes[0].broker.ClusterURL()})
	for _, n := range nodes {
		awaitNodes(t, n, 3)
	}
	k3 := strings.TrimSuffix(strings.TrimPrefix(p.ws, "ws://"), "/ws")
	// k3 first: the proxy sends the handshake there, so k3 owns the session.
	proxy := startRRProxy(t, k3, strings.TrimPrefix(nodes[0].http, "http://"), strings.TrimPrefix(nodes[1].http, "http://"))
	c := startSIOClient(t, "client", sioScenario{URL: "http://" + proxy.addr(),
		Options: map[string]any{"auth": map[string]any{"user": "lazarus"}, "transports": []string{"polling"},
			"reconnection": true, "reconnectionDelay": 100, "reconnectionDelayMax": 500},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{"crypt"}, Ack: "j1"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j1"}},
			{Do: "sync", Label: "kill"},
			{Do: "expect", Match: map[string]any{"ev": "disconnect"}, Timeout: 8000},
			{Do: "expect", Match: map[string]any{"ev": "connect"}, Timeout: 10000},
			{Do: "emit", Event: "join", Args: []any{"crypt"}, Ack: "j2"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j2", "args": []any{map[string]any{"type": "joined"}}}},
			{Do: "sync", Label: "publish"},
			{Do: "expect", Match: map[string]any{"ev": "event", "name": "news"}},
			{Do: "disconnect"},
		}})
	if owner := socketio.OwnerOf(c.next("connect", nil).SID); owner != "k3" {
		t.Fatalf("the session is %q's, want k3's", owner)
	}
	c.next("sync", nil)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.wait(t, 5*time.Second)
	c.release()
	if o := socketio.OwnerOf(c.next("connect", nil).SID); o == "k3" || o == "" {
		t.Fatalf("reconnected to %q", o)
	}
	c.next("sync", nil)
	awaitInterest(t, nodes, "crypt", 1)
	nc := natsConnect(t, nodes[0].nats)
	if err := nc.Publish("push.chan.crypt", []byte(`{"type":"news"}`)); err != nil {
		t.Fatal(err)
	}
	c.release()
	if code := c.wait(20 * time.Second); code != 0 {
		t.Fatalf("driver exit %d", code)
	}
}

// proxyOver is a round-robin proxy in front of the nodes' gateways.
func proxyOver(t testing.TB, nodes []*testNode) *rrProxy {
	t.Helper()
	var backends []string
	for _, n := range nodes {
		backends = append(backends, strings.TrimPrefix(n.http, "http://"))
	}
	return startRRProxy(t, backends...)
}

// TestSocketIOSlowConsumer: a Socket.IO client that stops reading while
// its channel is flooded is closed as a native one is (4001, once its
// queue passes session.queue_frames) and leaves the channel; 4001 sends
// no DISCONNECT, so socket.io-client reconnects by itself and joins again.
func TestSocketIOSlowConsumer(t *testing.T) {
	// The close frame waits behind what the client does not read, for at
	// most write_timeout: then the socket closes and the client leaves.
	n := startTestNode(t, "n1", nil, "--queue-frames", "64", "--write-timeout", "1s")
	nc := natsConnect(t, n.nats)
	left := make(chan string, 16)
	backendSubscribe(t, nc, "push.events.leave.flood", func(m *nats.Msg) { left <- string(m.Data) }, n)
	c := startSIOClient(t, "slow", sioScenario{URL: "http://" + strings.TrimPrefix(n.http, "http://"),
		Options: map[string]any{"auth": map[string]any{"user": "slow"}, "transports": []string{"websocket"},
			"reconnection": true, "reconnectionDelay": 100, "reconnectionDelayMax": 500},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{"flood"}, Ack: "j1"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j1"}},
			{Do: "stop_reading"},
			{Do: "sync", Label: "paused", Timeout: 30000},
			{Do: "resume_reading"},
			{Do: "expect", Match: map[string]any{"ev": "disconnect"}, Timeout: 10000},
			{Do: "expect", Match: map[string]any{"ev": "connect"}, Timeout: 10000},
			{Do: "emit", Event: "join", Args: []any{"flood"}, Ack: "j2"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j2", "args": []any{map[string]any{"type": "joined"}}}},
			{Do: "disconnect"},
		}})
	c.next("sync", nil)
	payload := []byte(`{"type":"news","pad":"` + strings.Repeat("x", 16<<10) + `"}`)
	before := n.hub.Stats().SlowConsumers
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; n.hub.Stats().SlowConsumers == before; i++ {
		if i == 20_000 || time.Now().After(deadline) {
			t.Fatalf("after %d messages of %d bytes the client that reads nothing is still connected", i, len(payload))
		}
		if err := nc.Publish("push.chan.flood", payload); err != nil {
			t.Fatal(err)
		}
		if i%64 == 63 {
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case ev := <-left:
		if !strings.Contains(ev, `"user":"slow"`) {
			t.Fatalf("leave event %s", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no leave event for the slow client")
	}
	c.release()
	if code := c.wait(20 * time.Second); code != 0 {
		t.Fatalf("driver exit %d", code)
	}
	for _, l := range c.all() {
		if l.Ev == "disconnect" && l.Reason == "io server disconnect" {
			t.Fatalf("the server sent DISCONNECT, after which socket.io-client does not reconnect: %s", l)
		}
	}
}

// TestSocketIOHistory: a Socket.IO client joins a history channel with
// since through emit("join", {channel, since}, ack): the ack says
// recovered, and the missed messages arrive as events with their seq.
func TestSocketIOHistory(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--config", writeConfig(t, historyConfig), "--cluster-listen", "")
	awaitHistory(t, n, 1)
	nc := natsConnect(t, n.nats)
	publishNews(t, nc, "hist.s", 1, 3)
	var first float64
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		h := apiCall(t, nc, "history", map[string]any{"channel": "hist.s"})
		msgs, _ := h["messages"].([]any)
		if len(msgs) != 3 {
			return fmt.Errorf("history %v", h)
		}
		first = msgs[0].(map[string]any)["seq"].(float64)
		return nil
	})
	c := startSIOClient(t, "history", sioScenario{URL: "http://" + strings.TrimPrefix(n.http, "http://"),
		Options: map[string]any{"auth": map[string]any{"user": "sio"}, "transports": []string{"websocket"}},
		Steps: []sioStep{
			{Do: "connect"},
			{Do: "emit", Event: "join", Args: []any{map[string]any{"channel": "hist.s", "since": first}}, Ack: "j"},
			{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j", "args": []any{map[string]any{"type": "joined", "recovered": true}}}},
			{Do: "expect", Match: map[string]any{"ev": "event", "name": "news", "args": []any{map[string]any{"n": 2, "seq": first + 1}}}},
			{Do: "expect", Match: map[string]any{"ev": "event", "name": "news", "args": []any{map[string]any{"n": 3, "seq": first + 2}}}},
			{Do: "disconnect"},
		}})
	if code := c.wait(20 * time.Second); code != 0 {
		t.Fatalf("driver exit %d", code)
	}
}

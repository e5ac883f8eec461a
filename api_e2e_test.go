package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
)

// apiCall calls push.api.<method> on nc with req and decodes the answer.
func apiCall(t testing.TB, nc *nats.Conn, method string, req any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(req)
	m, err := nc.Request("push.api."+method, body, 15*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var out map[string]any
	if err := json.Unmarshal(m.Data, &out); err != nil {
		t.Fatalf("%s: answer %q: %v", method, m.Data, err)
	}
	return out
}

// TestServerAPI: every method of PROTOCOL.md §7 over NATS, on a cluster
// of three, answered by any node for the whole cluster.
func TestServerAPI(t *testing.T) {
	nodes := startCluster(t, 3, "--config", writeConfig(t, historyConfig))
	for _, n := range nodes {
		awaitHistory(t, n, 3)
	}
	nc := natsConnect(t, nodes[0].nats)
	alice := dial(t, nodes[0].ws, dialOpts{query: "?user=alice"})
	alice2 := dial(t, nodes[1].ws, dialOpts{query: "?user=alice"})
	bob := dial(t, nodes[2].ws, dialOpts{query: "?user=bob"})
	for _, c := range []*wsClient{alice, alice2, bob} {
		c.join("room")
	}
	awaitInterest(t, nodes, "room", 3)

	// info
	info := apiCall(t, nc, "info", map[string]any{})
	if ns, _ := info["nodes"].([]any); len(ns) != 3 {
		t.Fatalf("info: %v", info)
	}

	// presence, cluster-wide
	p := apiCall(t, nc, "presence", map[string]any{"channel": "room"})
	if p["count"] != float64(3) || len(p["users"].([]any)) != 2 {
		t.Fatalf("presence: %v", p)
	}
	if u := p["users"].([]any)[0].(map[string]any); u["user"] != "alice" || u["conns"] != float64(2) {
		t.Fatalf("presence users: %v", p["users"])
	}

	// The same from a client, whose node asks the others.
	bob.send(map[string]any{"type": "presence", "channel": "room", "id": "p"})
	if f := bob.answer("p"); f.str("type") != "presence" || f["count"] != float64(3) || len(f["users"].([]any)) != 2 {
		t.Fatalf("presence frame: %v", f)
	}

	// channels
	ch := apiCall(t, nc, "channels", map[string]any{"pattern": "*"})
	if list, _ := ch["channels"].([]any); len(list) != 1 || list[0].(map[string]any)["members"] != float64(3) {
		t.Fatalf("channels: %v", ch)
	}

	// publish: plain channel, then a history channel, twice with one id
	if r := apiCall(t, nc, "publish", map[string]any{"channel": "room", "data": map[string]any{"type": "news", "n": 1}}); r["error"] != nil {
		t.Fatalf("publish: %v", r)
	}
	bob.next("news")
	bob.join("hist.api")
	var seqs []any
	for range 2 {
		r := apiCall(t, nc, "publish", map[string]any{"channel": "hist.api", "data": map[string]any{"type": "news", "n": 2}, "id": "once"})
		if r["seq"] == nil {
			t.Fatalf("durable publish: %v", r)
		}
		seqs = append(seqs, r["seq"])
	}
	if seqs[0] != seqs[1] {
		t.Fatalf("a retry with the same id stored again: seqs %v", seqs)
	}
	if f := bob.next("news"); seqOf(f) != uint64(seqs[0].(float64)) {
		t.Fatalf("stored news %v, want seq %v", f, seqs[0])
	}
	bob.expectNone("news", 300*time.Millisecond)

	// history
	h := apiCall(t, nc, "history", map[string]any{"channel": "hist.api", "since": 0})
	if msgs, _ := h["messages"].([]any); h["seq"] != seqs[0] || len(msgs) != 1 {
		t.Fatalf("history: %v", h)
	}

	// subscribe / unsubscribe every connection of alice
	if r := apiCall(t, nc, "subscribe", map[string]any{"user": "alice", "channel": "vip"}); r["conns"] != float64(2) {
		t.Fatalf("subscribe: %v", r)
	}
	alice.nextWhere("joined", func(f frame) bool { return f.str("channel") == "vip" })
	alice2.nextWhere("joined", func(f frame) bool { return f.str("channel") == "vip" })
	if r := apiCall(t, nc, "unsubscribe", map[string]any{"user": "alice", "channel": "vip"}); r["conns"] != float64(2) {
		t.Fatalf("unsubscribe: %v", r)
	}
	alice.nextWhere("left", func(f frame) bool { return f.str("channel") == "vip" })

	// disconnect
	if r := apiCall(t, nc, "disconnect", map[string]any{"user": "alice", "code": 4020, "reason": "bye"}); r["conns"] != float64(2) {
		t.Fatalf("disconnect: %v", r)
	}
	if code := alice.closeCode(5 * time.Second); code != 4020 {
		t.Fatalf("alice closed with %d, want 4020", code)
	}
	err := <-alice.closed
	var ce *gws.CloseError
	if !errors.As(err, &ce) || string(ce.Reason) != "bye" {
		t.Fatalf("alice's close: %v, want reason bye", err)
	}

	// bad requests get an error, never a crash
	for _, c := range []struct {
		method string
		req    any
	}{
		{"publish", map[string]any{"channel": "bad channel", "data": 1}},
		{"publish", map[string]any{"channel": "room"}},
		{"disconnect", map[string]any{"user": "a", "conn": "b"}},
		{"disconnect", map[string]any{"user": "a", "code": 1000}},
		{"history", map[string]any{"channel": "room"}},
		{"nosuch", map[string]any{}},
	} {
		if r := apiCall(t, nc, c.method, c.req); r["error"] == nil {
			t.Errorf("%s %v: %v, want an error", c.method, c.req, r)
		}
	}

	// A request whose reply subject is not an inbox is not answered: the
	// node would otherwise publish there for the backend. (Backends may
	// not subscribe to channels: the node's own connection listens.)
	sub, err := nodes[1].broker.Conn().SubscribeSync("push.chan.quiet")
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].broker.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("push.api.info", "push.chan.quiet", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("the node answered onto a channel: %s", m.Data)
	}
}

// TestServerAPIOverHTTP: the admin listener serves the same methods as
// POST /api/<method>, behind admin.token.
func TestServerAPIOverHTTP(t *testing.T) {
	const token = "an-admin-token-of-16+"
	n := startTestNode(t, "n1", nil, "--admin-listen", "127.0.0.1:0", "--admin-token", token)
	c := dial(t, n.ws, dialOpts{query: "?user=alice"})
	c.join("room")
	post := func(method, body, auth string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.AdminAddr()+"/api/"+method, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	// Every method: 401 without the token, an error for bad input with it.
	for method, bad := range map[string]string{
		"publish":     `{"channel":"a b","data":1}`,
		"presence":    `{"channel":""}`,
		"channels":    `{"pattern":"a.>.b"}`,
		"history":     `{"channel":"room"}`, // keeps no history
		"subscribe":   `{"user":"","channel":"room"}`,
		"unsubscribe": `{"user":"u","channel":"*"}`,
		"disconnect":  `{"user":"u","code":999}`,
		"info":        `[1]`,
	} {
		if code, _ := post(method, `{}`, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", method, code)
		}
		if code, out := post(method, bad, token); code != http.StatusOK || out["error"] == nil {
			t.Errorf("%s %s: %d %v, want an error", method, bad, code, out)
		}
	}
	if code, out := post("publish", `{"channel":"room","data":{"type":"news"}}`, token); code != 200 || out["error"] != nil {
		t.Fatalf("publish: %d %v", code, out)
	}
	c.next("news")
	if _, out := post("presence", `{"channel":"room"}`, token); out["count"] != float64(1) {
		t.Fatalf("presence: %v", out)
	}

	_, body := httpGet(t, n.http+"/metrics")
	for _, want := range []string{`pushgrid_api_requests_total{method="publish",result="ok"} 1`, `pushgrid_api_requests_total{method="presence",result="ok"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// pushgrid api, over NATS.
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"api", "--server", n.nats, "presence", `{"channel":"room"}`}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("pushgrid api presence: %v (%s)", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"count":1`) {
		t.Fatalf("pushgrid api presence printed %q", stdout.String())
	}
	stdout.Reset()
	if err := run(context.Background(), []string{"api", "--server", n.nats, "publish", `{"channel":"bad channel","data":1}`}, nil, &stdout, &stderr); err == nil {
		t.Fatalf("pushgrid api publish to a bad channel succeeded: %s", stdout.String())
	}
	if err := run(context.Background(), []string{"api", "--server", n.nats, "nosuch"}, nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Fatalf("unknown method: %v", err)
	}
}

package main

// End-to-end tests of PROTOCOL.md §4 (authentication) and §5 (channel
// rules) on three nodes, with real WebSocket and NATS clients.

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
)

const testSecret = "a-test-secret-of-at-least-32-bytes!!"

// signed is an HS256 token of claims signed with testSecret.
func signed(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refusal sends an upgrade request to n and returns the HTTP status and
// the body's error text; the test fails if the upgrade succeeds or the
// body is not {"error":"..."}.
func refusal(t testing.TB, n *testNode, query string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", n.http+"/ws"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("upgrade %s accepted", query)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d, body %q: not {\"error\":...}", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, e.Error
}

// bearer is a header carrying token as Authorization: Bearer.
func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// writeConfig writes a configuration file for a test and returns its path.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pushgrid.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rulesConfig are the channel rules the auth tests run with.
const rulesConfig = `
[[channels]]
pattern = "paid.>"
join = "claim"

[[channels]]
pattern = "alerts.>"
chat = "nobody"

[[channels]]
pattern = "system.>"
join = "none"

[[channels]]
pattern = "quiet.>"
announce = false

[[channels]]
pattern = "members.>"
join = "user"
`

func TestJWTTokenSources(t *testing.T) {
	nodes := startCluster(t, 3, "--auth", "jwt", "--auth-secret", testSecret)
	token := signed(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	for i, o := range []dialOpts{
		{header: bearer(token)},
		{query: "?token=" + url.QueryEscape(token)},
		{header: http.Header{"Cookie": {"pushgrid_token=" + token}}},
		// ?user= is ignored: the token says who the client is.
		{query: "?user=mallory&token=" + url.QueryEscape(token)},
	} {
		c := dial(t, nodes[i%3].ws, o)
		if c.user() != "alice" {
			t.Fatalf("source %d: user %q, want alice", i, c.user())
		}
	}
	// A join's user is ignored too.
	c := dial(t, nodes[0].ws, dialOpts{header: bearer(token)})
	c.send(map[string]any{"type": "join", "channel": "room", "user": "mallory"})
	c.next("joined")
	if f := c.next("control"); f.str("user") != "alice" {
		t.Fatalf("joined as %q", f.str("user"))
	}
	// First found wins: a bad header is not rescued by a good query.
	if status, _ := refusal(t, nodes[1], "?token="+url.QueryEscape(token), bearer("garbage")); status != 401 {
		t.Fatalf("status %d", status)
	}
	if status, msg := refusal(t, nodes[2], "?user=alice", nil); status != 401 || !strings.HasPrefix(msg, "invalid token: ") {
		t.Fatalf("no token: %d %q", status, msg)
	}
}

func TestJWTRefusals(t *testing.T) {
	nodes := startCluster(t, 3, "--auth", "jwt", "--auth-secret", testSecret,
		"--auth-issuer", "https://issuer.example", "--auth-audience", "pushgrid")
	good := jwt.MapClaims{"sub": "bob", "iss": "https://issuer.example", "aud": "pushgrid", "exp": time.Now().Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, good).SignedString(rsaKey)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	otherKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString([]byte("another-secret-of-at-least-32-bytes!"))
	goodToken := signed(t, good)
	tampered := goodToken[:len(goodToken)-2] + "xx"

	cases := map[string]string{
		"bad signature":   otherKey,
		"tampered":        tampered,
		"wrong algorithm": rs256,
		"alg none":        none,
		"expired":         signed(t, with("exp", time.Now().Add(-time.Hour).Unix())),
		"not yet valid":   signed(t, with("nbf", time.Now().Add(time.Hour).Unix())),
		"wrong issuer":    signed(t, with("iss", "https://evil.example")),
		"wrong audience":  signed(t, with("aud", "someone-else")),
		"no sub":          signed(t, with("sub", nil)),
		"invalid sub":     signed(t, with("sub", "bob smith")),
		"anon sub":        signed(t, with("sub", "anon-123")),
		"bad channels":    signed(t, with("channels", []string{"a..b"})),
		"not a token":     "hello",
	}
	i := 0
	for name, token := range cases {
		status, msg := refusal(t, nodes[i%3], "", bearer(token))
		if status != http.StatusUnauthorized || !strings.HasPrefix(msg, "invalid token: ") {
			t.Errorf("%s: %d %q, want 401 invalid token: ...", name, status, msg)
		}
		i++
	}
	if c := dial(t, nodes[0].ws, dialOpts{header: bearer(goodToken)}); c.user() != "bob" {
		t.Fatalf("the good token: user %q", c.user())
	}
}

func TestChannelRules(t *testing.T) {
	cfg := writeConfig(t, rulesConfig)
	nodes := startCluster(t, 3, "--auth", "jwt", "--auth-secret", testSecret, "--config", cfg)
	exp := time.Now().Add(time.Hour).Unix()
	gold := dial(t, nodes[0].ws, dialOpts{header: bearer(signed(t, jwt.MapClaims{"sub": "gina", "exp": exp, "channels": []string{"paid.gold.*"}}))})
	plain := dial(t, nodes[1].ws, dialOpts{header: bearer(signed(t, jwt.MapClaims{"sub": "paul", "exp": exp}))})

	// join = "claim": the claim's patterns decide.
	gold.join("paid.gold.news")
	for _, c := range []struct {
		who     *wsClient
		channel string
	}{{gold, "paid.silver.news"}, {plain, "paid.gold.news"}, {plain, "system.jobs"}, {gold, "system.jobs"}} {
		c.who.send(map[string]any{"type": "join", "channel": c.channel, "id": "j"})
		if f := c.who.answer("j"); f.str("code") != "forbidden" {
			t.Fatalf("%s joining %s: %v, want forbidden", c.who.user(), c.channel, f)
		}
	}

	// chat = "nobody": a client's chat is refused, a backend's publish
	// arrives.
	plain.join("alerts.eu")
	gold.join("alerts.eu")
	awaitInterest(t, nodes, "alerts.eu", 2)
	plain.send(map[string]any{"type": "chat", "channel": "alerts.eu", "msg": "fake alert", "id": "c"})
	if f := plain.answer("c"); f.str("code") != "forbidden" {
		t.Fatalf("chat on alerts: %v", f)
	}
	nc := natsConnect(t, nodes[2].nats)
	if err := nc.Publish("push.chan.alerts.eu", []byte(`{"type":"alert","level":"high"}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*wsClient{plain, gold} {
		if f := c.next("alert"); f.str("level") != "high" {
			t.Fatalf("%v", f)
		}
	}
	gold.expectNone("chat", 200*time.Millisecond)

	// announce = false: members get no control frames.
	gold.join("quiet.room")
	awaitInterest(t, nodes, "quiet.room", 1)
	plain.join("quiet.room")
	plain.send(map[string]any{"type": "leave", "channel": "quiet.room"})
	plain.next("left")
	gold.roundTrip()
	gold.expectNone("control", 300*time.Millisecond)
}

func TestJoinUserRule(t *testing.T) {
	cfg := writeConfig(t, rulesConfig)
	nodes := startCluster(t, 3, "--config", cfg) // auth none: anonymous clients exist
	anon := dial(t, nodes[0].ws, dialOpts{})
	anon.send(map[string]any{"type": "join", "channel": "members.lounge", "id": 1})
	if f := anon.answer(1.0); f.str("code") != "forbidden" {
		t.Fatalf("%v", f)
	}
	dial(t, nodes[1].ws, dialOpts{query: "?user=nora"}).join("members.lounge")
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	nodes := startCluster(t, 3, "--auth", "jwt", "--auth-secret", testSecret, "--auth-leeway", "0s")
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	short := signed(t, jwt.MapClaims{"sub": "erin", "exp": exp.Unix()})

	expiring := dial(t, nodes[0].ws, dialOpts{header: bearer(short)})
	kept := dial(t, nodes[1].ws, dialOpts{header: bearer(short)})
	later := time.Now().Add(time.Hour).Unix()
	kept.send(map[string]any{"type": "refresh", "token": signed(t, jwt.MapClaims{"sub": "erin", "exp": later}), "id": "r1"})
	if f := kept.answer("r1"); f.str("type") != "refreshed" || f["exp"] != float64(later) {
		t.Fatalf("%v", f)
	}
	kept.send(map[string]any{"type": "refresh", "token": signed(t, jwt.MapClaims{"sub": "mallory", "exp": later}), "id": "r2"})
	if f := kept.answer("r2"); f.str("code") != "bad_token" {
		t.Fatalf("refresh for another user: %v", f)
	}
	kept.send(map[string]any{"type": "refresh", "token": "forged", "id": "r3"})
	if f := kept.answer("r3"); f.str("code") != "bad_token" {
		t.Fatalf("forged refresh: %v", f)
	}

	if code := expiring.closeCode(time.Until(exp) + 5*time.Second); code != 4003 {
		t.Fatalf("close %d, want 4003", code)
	}
	if late := time.Since(exp); late < 0 || late > time.Second {
		t.Fatalf("closed %v after exp (leeway 0s), want within a second", late)
	}
	kept.roundTrip() // the refreshed connection lives on past the first exp
}

// hookBackend answers push.auth requests on nc as answer says, from the
// uid cookie of each request, and records the last request.
func hookBackend(t testing.TB, nc *nats.Conn, answer func(uid string) []byte) chan map[string]any {
	t.Helper()
	requests := make(chan map[string]any, 16)
	_, err := nc.Subscribe("push.auth", func(m *nats.Msg) {
		var req struct {
			Headers map[string]string `json:"headers"`
		}
		_ = json.Unmarshal(m.Data, &req)
		var all map[string]any
		_ = json.Unmarshal(m.Data, &all)
		select {
		case requests <- all:
		default:
		}
		uid := ""
		for _, c := range (&http.Request{Header: http.Header{"Cookie": {req.Headers["Cookie"]}}}).Cookies() {
			if c.Name == "uid" {
				uid = c.Value
			}
		}
		if reply := answer(uid); reply != nil {
			_ = m.Respond(reply)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return requests
}

func TestHookAuth(t *testing.T) {
	nodes := startCluster(t, 3, "--auth", "hook", "--auth-timeout", "300ms")
	cookie := func(uid string) http.Header { return http.Header{"Cookie": {"uid=" + uid}} }

	// No responder yet: 503.
	if status, msg := refusal(t, nodes[0], "", cookie("ann")); status != 503 || msg != "auth backend unavailable" {
		t.Fatalf("no responder: %d %q", status, msg)
	}

	nc := natsConnect(t, nodes[1].nats)
	requests := hookBackend(t, nc, func(uid string) []byte {
		switch uid {
		case "banned":
			return []byte(`{"error":"you are banned","status":403}`)
		case "":
			return []byte(`{"error":"log in first","status":401}`)
		case "slow":
			return nil // never answers
		case "garbled":
			return []byte(`{"user":`)
		case "bad-user":
			return []byte(`{"user":"two words"}`)
		}
		return []byte(fmt.Sprintf(`{"user":%q,"channels":["paid.>"]}`, uid))
	})
	for _, n := range nodes {
		awaitSubject(t, n.broker.Server(), "push.auth", 1)
	}

	c := dial(t, nodes[0].ws, dialOpts{header: cookie("ann"), query: "?user=mallory&x=1"})
	if c.user() != "ann" {
		t.Fatalf("user %q, want ann", c.user())
	}
	req := <-requests
	if req["path"] != "/ws" || req["node"] != "n1" || req["remote"] != "127.0.0.1" {
		t.Fatalf("hook request %v", req)
	}
	if q, _ := req["query"].(map[string]any); q["x"] != "1" || q["user"] != "mallory" {
		t.Fatalf("hook request query %v", req["query"])
	}
	if h, _ := req["headers"].(map[string]any); h["Cookie"] != "uid=ann" {
		t.Fatalf("hook request headers %v", req["headers"])
	}

	for uid, want := range map[string]struct {
		status int
		msg    string
	}{
		"banned":   {403, "you are banned"},
		"":         {401, "log in first"},
		"slow":     {503, "auth backend unavailable"},
		"garbled":  {503, "auth backend unavailable"},
		"bad-user": {503, "auth backend unavailable"},
	} {
		h := cookie(uid)
		if uid == "" {
			h = nil
		}
		if status, msg := refusal(t, nodes[2], "", h); status != want.status || msg != want.msg {
			t.Errorf("uid %q: %d %q, want %d %q", uid, status, msg, want.status, want.msg)
		}
	}
	// In hook mode a refresh is bad_token: the client reconnects instead.
	c.send(map[string]any{"type": "refresh", "token": "x", "id": 1})
	if f := c.answer(1.0); f.str("code") != "bad_token" {
		t.Fatalf("%v", f)
	}
}

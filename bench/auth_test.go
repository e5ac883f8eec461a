package bench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestSignTokens(t *testing.T) {
	cfg := Config{Subs: 3, UserPrefix: "u", AuthSecret: "0123456789abcdef0123456789abcdef"}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tokens, err := signTokens(&cfg, exp)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range tokens {
		var claims jwt.RegisteredClaims
		_, err := jwt.ParseWithClaims(s, &claims, func(*jwt.Token) (any, error) { return []byte(cfg.AuthSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}))
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if want := cfg.userName(i); claims.Subject != want || !claims.ExpiresAt.Equal(exp) {
			t.Errorf("token %d: sub %q exp %v, want %q %v", i, claims.Subject, claims.ExpiresAt, want, exp)
		}
	}
}

func TestCookie(t *testing.T) {
	cases := []struct{ header, want string }{
		{"uid=bench7", "bench7"},
		{"a=b; uid=bench7; c=d", "bench7"},
		{"a=b", ""},
		{"", ""},
		{"uid", ""},
	}
	for _, k := range cases {
		t.Run(k.header, func(t *testing.T) {
			if got := cookie(k.header, hookCookie); got != k.want {
				t.Errorf("cookie(%q) = %q, want %q", k.header, got, k.want)
			}
		})
	}
}

// TestHookBackend sends the hook the requests a node would, over a real
// NATS server.
func TestHookBackend(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	h, err := startHook(ns.ClientURL(), "push.auth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	cases := []struct{ cookie, want string }{
		{"uid=bench3; other=x", `{"user":"bench3"}`},
		{"other=x", string(hookRefusal)},
	}
	for _, k := range cases {
		req, _ := json.Marshal(map[string]any{"remote": "127.0.0.1", "path": "/ws", "query": map[string]string{},
			"headers": map[string]string{"Cookie": k.cookie}, "node": "n1"})
		m, err := nc.Request("push.auth", req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != k.want {
			t.Errorf("cookie %q: answer %s, want %s", k.cookie, m.Data, k.want)
		}
	}
	// The hook counts an answer once it is sent, which may be after the
	// requester has it.
	for deadline := time.Now().Add(5 * time.Second); h.answered.Load() != int64(len(cases)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("answered %d requests, want %d", h.answered.Load(), len(cases))
		}
	}
}

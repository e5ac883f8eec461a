package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/session"
)

// fakeHook stands in for the NATS request on <prefix>.auth: it records
// the payloads it is sent and answers with reply.
type fakeHook struct {
	reply func(ctx context.Context, payload []byte) ([]byte, error)

	mu       sync.Mutex // guards payloads
	payloads [][]byte
}

func (h *fakeHook) request(ctx context.Context, payload []byte) ([]byte, error) {
	h.mu.Lock()
	h.payloads = append(h.payloads, bytes.Clone(payload))
	h.mu.Unlock()
	return h.reply(ctx, payload)
}

func answer(reply string) *fakeHook {
	return &fakeHook{reply: func(context.Context, []byte) ([]byte, error) { return []byte(reply), nil }}
}

// mustHookAuth returns an Authenticator in mode hook asking h, and the
// buffer its log lines go to.
func mustHookAuth(tb testing.TB, h *fakeHook, timeout time.Duration) (*Authenticator, *bytes.Buffer) {
	tb.Helper()
	var log bytes.Buffer
	cfg := Config{Mode: ModeHook, Timeout: timeout, Logger: slog.New(slog.NewTextHandler(&log, nil))}
	a, err := New(cfg, "node-1", h.request)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a, &log
}

func TestHookRequestPayload(t *testing.T) {
	tests := []struct {
		name   string
		r      *http.Request
		remote netip.Addr
		want   string
	}{
		{
			name: "net/http request",
			r: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://push.example.com/ws?room=a&room=b&token=t&sp=%20x", nil)
				r.Header.Set("Cookie", "sid=42")
				r.Header.Add("X-Tag", "first")
				r.Header.Add("X-Tag", "second")
				r.Header["x-lower"] = []string{"v"}
				return r
			}(),
			remote: netip.MustParseAddr("203.0.113.7"),
			want:   `{"remote":"203.0.113.7","path":"/ws","query":{"room":"a","sp":" x","token":"t"},"headers":{"Cookie":"sid=42","Host":"push.example.com","X-Lower":"v","X-Tag":"first"},"node":"node-1"}`,
		},
		{
			// What the gateway's light parser builds: no context, no
			// RemoteAddr, only URL, Header and Host.
			name: "light request",
			r: &http.Request{
				Method: http.MethodGet,
				URL:    &url.URL{Path: "/ws"},
				Header: http.Header{"Upgrade": {"websocket"}, "Authorization": {"Basic YQ=="}},
				Host:   "[::1]:8000",
			},
			remote: netip.MustParseAddr("2001:db8::1"),
			want:   `{"remote":"2001:db8::1","path":"/ws","query":{},"headers":{"Authorization":"Basic YQ==","Host":"[::1]:8000","Upgrade":"websocket"},"node":"node-1"}`,
		},
		{
			name:   "nothing",
			r:      &http.Request{URL: &url.URL{Path: "/socket.io/"}, Header: http.Header{}},
			remote: netip.MustParseAddr("127.0.0.1"),
			want:   `{"remote":"127.0.0.1","path":"/socket.io/","query":{},"headers":{},"node":"node-1"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := answer(`{"user":"alice"}`)
			a, _ := mustHookAuth(t, h, time.Second)
			if _, err := a.Authenticate(tc.r, tc.remote); err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if len(h.payloads) != 1 || string(h.payloads[0]) != tc.want {
				t.Fatalf("payloads %q\nwant %s", h.payloads, tc.want)
			}
		})
	}
}

func TestHookAnswers(t *testing.T) {
	noResponders := &fakeHook{reply: func(context.Context, []byte) ([]byte, error) { return nil, nats.ErrNoResponders }}
	tests := []struct {
		name       string
		hook       *fakeHook
		want       session.Identity
		wantStatus int // 0 for an accepted client
		wantMsg    string
		wantLog    string // in the one log line, when there is one
	}{
		{name: "accepted", hook: answer(`{"user":"alice","channels":["news.>","@alice"],"exp":1900000000}`),
			want: session.Identity{User: "alice", Verified: true, Channels: patterns("news.>", "@alice"), Expires: time.Unix(1900000000, 0)}},
		{name: "accepted bare", hook: answer(`{"user":"bob"}`),
			want: session.Identity{User: "bob", Verified: true}},
		{name: "refused 401", hook: answer(`{"error":"log in first","status":401}`),
			wantStatus: 401, wantMsg: "log in first"},
		{name: "refused 403", hook: answer(`{"status":403,"error":"banned until Monday"}`),
			wantStatus: 403, wantMsg: "banned until Monday"},
		{name: "no responders", hook: noResponders,
			wantStatus: 503, wantMsg: "auth backend unavailable", wantLog: "no responders"},
		{name: "not JSON", hook: answer(`<html>oops</html>`),
			wantStatus: 503, wantMsg: "auth backend unavailable", wantLog: "not a JSON object"},
		{name: "invalid user", hook: answer(`{"user":"anon-7"}`),
			wantStatus: 503, wantMsg: "auth backend unavailable", wantLog: "anon-7"},
		{name: "status 500", hook: answer(`{"error":"db down","status":500}`),
			wantStatus: 503, wantMsg: "auth backend unavailable", wantLog: "500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, log := mustHookAuth(t, tc.hook, time.Second)
			id, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/ws", nil), testRemote)
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if !sameIdentity(id, tc.want) {
					t.Fatalf("identity %+v, want %+v", id, tc.want)
				}
			} else if he := asHTTPError(t, err); he.Status != tc.wantStatus || he.Msg != tc.wantMsg {
				t.Fatalf("refusal %d %q, want %d %q", he.Status, he.Msg, tc.wantStatus, tc.wantMsg)
			}
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			switch {
			case tc.wantLog == "" && log.Len() != 0:
				t.Fatalf("logged %q, want nothing", log.String())
			case tc.wantLog != "" && (len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], tc.wantLog)):
				t.Fatalf("logged %q, want one warning saying %q", log.String(), tc.wantLog)
			}
		})
	}
}

// TestHookTimeout checks that a backend that never answers costs the
// client auth.timeout, not more, and a 503.
func TestHookTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	h := &fakeHook{reply: func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	a, log := mustHookAuth(t, h, timeout)
	start := time.Now()
	_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/ws", nil), testRemote)
	took := time.Since(start)
	if he := asHTTPError(t, err); he.Status != http.StatusServiceUnavailable || he.Msg != "auth backend unavailable" {
		t.Fatalf("refusal %d %q", he.Status, he.Msg)
	}
	if took < timeout || took > timeout+time.Second {
		t.Fatalf("refused after %v, want about %v", took, timeout)
	}
	if !strings.Contains(log.String(), "deadline exceeded") {
		t.Fatalf("logged %q, want the timeout", log.String())
	}
}

// TestHookClientGone checks that the hook's context ends with the
// request's: a client that went away is not waited for.
func TestHookClientGone(t *testing.T) {
	h := &fakeHook{reply: func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	a, _ := mustHookAuth(t, h, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/ws", nil).WithContext(ctx), testRemote)
	if he := asHTTPError(t, err); he.Status != http.StatusServiceUnavailable {
		t.Fatalf("refusal %d %q", he.Status, he.Msg)
	}
}

func TestDecodeHookReply(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	tests := []struct {
		name       string
		reply      string
		want       session.Identity
		wantStatus int // 0 for an accepted identity
		wantMsg    string
	}{
		{"user", `{"user":"alice"}`, session.Identity{User: "alice", Verified: true}, 0, ""},
		{"user with channels and exp", ` {"user":"alice","channels":["a.*",">"],"exp":1900000000} `,
			session.Identity{User: "alice", Verified: true, Channels: patterns("a.*", ">"), Expires: time.Unix(1900000000, 0)}, 0, ""},
		{"nulls are absent", `{"user":"alice","channels":null,"exp":null,"error":null,"status":null}`,
			session.Identity{User: "alice", Verified: true}, 0, ""},
		{"exp 0 is none", `{"user":"alice","exp":0}`, session.Identity{User: "alice", Verified: true}, 0, ""},
		{"unknown keys ignored", `{"user":"alice","name":{"first":"Alice","tags":[1,2]}}`, session.Identity{User: "alice", Verified: true}, 0, ""},
		{"401", `{"error":"who are you?","status":401}`, session.Identity{}, 401, "who are you?"},
		{"403", `{"error":"not you","status":403}`, session.Identity{}, 403, "not you"},
		{"403 escaped text", `{"error":"\u00e9t\u00e9 \"quoted\"","status":403}`, session.Identity{}, 403, `été "quoted"`},

		{"empty", ``, session.Identity{}, 503, msgUnavailable},
		{"null", `null`, session.Identity{}, 503, msgUnavailable},
		{"array", `[{"user":"alice"}]`, session.Identity{}, 503, msgUnavailable},
		{"string", `"alice"`, session.Identity{}, 503, msgUnavailable},
		{"empty object", `{}`, session.Identity{}, 503, msgUnavailable},
		{"truncated", `{"user":"alice"`, session.Identity{}, 503, msgUnavailable},
		{"trailing comma", `{"user":"alice",}`, session.Identity{}, 503, msgUnavailable},
		{"two objects", `{"user":"alice"}{"user":"bob"}`, session.Identity{}, 503, msgUnavailable},
		{"trailing garbage", `{"user":"alice"} x`, session.Identity{}, 503, msgUnavailable},
		{"duplicate user", `{"user":"alice","user":"bob"}`, session.Identity{}, 503, msgUnavailable},
		{"duplicate null user", `{"user":null,"user":"bob"}`, session.Identity{}, 503, msgUnavailable},
		{"duplicate unknown key", `{"user":"alice","x":1,"x":2}`, session.Identity{}, 503, msgUnavailable},
		{"user and error", `{"user":"alice","error":"no","status":401}`, session.Identity{}, 503, msgUnavailable},
		{"user and status", `{"user":"alice","status":401}`, session.Identity{}, 503, msgUnavailable},
		{"error without status", `{"error":"no"}`, session.Identity{}, 503, msgUnavailable},
		{"status without error", `{"status":401}`, session.Identity{}, 503, msgUnavailable},
		{"error with channels", `{"error":"no","status":401,"channels":["a"]}`, session.Identity{}, 503, msgUnavailable},
		{"error with exp", `{"error":"no","status":401,"exp":1}`, session.Identity{}, 503, msgUnavailable},
		{"status 200", `{"error":"fine","status":200}`, session.Identity{}, 503, msgUnavailable},
		{"status 500", `{"error":"db down","status":500}`, session.Identity{}, 503, msgUnavailable},
		{"status a string", `{"error":"no","status":"401"}`, session.Identity{}, 503, msgUnavailable},
		{"status a float", `{"error":"no","status":401.0}`, session.Identity{}, 503, msgUnavailable},
		{"status an exponent", `{"error":"no","status":4.01e2}`, session.Identity{}, 503, msgUnavailable},
		{"error not a string", `{"error":true,"status":401}`, session.Identity{}, 503, msgUnavailable},
		{"user a number", `{"user":42}`, session.Identity{}, 503, msgUnavailable},
		{"user an object", `{"user":{"name":"alice"}}`, session.Identity{}, 503, msgUnavailable},
		{"user empty", `{"user":""}`, session.Identity{}, 503, msgUnavailable},
		{"user anon", `{"user":"anon-1"}`, session.Identity{}, 503, msgUnavailable},
		{"user with space", `{"user":"alice smith"}`, session.Identity{}, 503, msgUnavailable},
		{"user with NUL", `{"user":"alice\u0000"}`, session.Identity{}, 503, msgUnavailable},
		{"raw NUL", "{\"user\":\"al\x00ice\"}", session.Identity{}, 503, msgUnavailable},
		{"user too long", `{"user":"` + strings.Repeat("a", 129) + `"}`, session.Identity{}, 503, msgUnavailable},
		{"User capitalized", `{"User":"alice"}`, session.Identity{}, 503, msgUnavailable},
		{"channels a string", `{"user":"alice","channels":"news.>"}`, session.Identity{}, 503, msgUnavailable},
		{"channels bad pattern", `{"user":"alice","channels":["news..x"]}`, session.Identity{}, 503, msgUnavailable},
		{"channels with null", `{"user":"alice","channels":["news",null]}`, session.Identity{}, 503, msgUnavailable},
		{"channels numbers", `{"user":"alice","channels":[1]}`, session.Identity{}, 503, msgUnavailable},
		{"exp a float", `{"user":"alice","exp":1900000000.5}`, session.Identity{}, 503, msgUnavailable},
		{"exp an exponent", `{"user":"alice","exp":1.9e9}`, session.Identity{}, 503, msgUnavailable},
		{"exp a string", `{"user":"alice","exp":"1900000000"}`, session.Identity{}, 503, msgUnavailable},
		{"exp negative", `{"user":"alice","exp":-1}`, session.Identity{}, 503, msgUnavailable},
		{"exp too large", `{"user":"alice","exp":99999999999999999999}`, session.Identity{}, 503, msgUnavailable},
		{"nested too deep", `{"x":` + deep + `,"user":"alice"}`, session.Identity{}, 503, msgUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, refusal, why := decodeHookReply([]byte(tc.reply))
			if tc.wantStatus == 0 {
				if refusal != nil || why != nil {
					t.Fatalf("refused %+v (%v), want %+v", refusal, why, tc.want)
				}
				if !sameIdentity(id, tc.want) {
					t.Fatalf("identity %+v, want %+v", id, tc.want)
				}
				return
			}
			if refusal == nil || refusal.Status != tc.wantStatus || refusal.Msg != tc.wantMsg {
				t.Fatalf("refusal %+v, want %d %q", refusal, tc.wantStatus, tc.wantMsg)
			}
			if (tc.wantStatus == http.StatusServiceUnavailable) != (why != nil) {
				t.Fatalf("refusal %d with reason %v: want a reason exactly for 503", refusal.Status, why)
			}
		})
	}
}

// FuzzHookReply checks that no reply makes decodeHookReply panic, that it
// grants only valid identities, and that its refusals are 401, 403 or
// 503. What it accepts, encoding/json reads the same way.
func FuzzHookReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		id, refusal, why := decodeHookReply(data)
		var fields map[string]json.RawMessage
		if refusal == nil {
			if why != nil {
				t.Fatalf("accepted with a reason %v", why)
			}
			if !session.ClaimableUser(id.User) || !id.Verified {
				t.Fatalf("accepted identity %+v", id)
			}
			for _, p := range id.Channels {
				if _, err := session.ParsePattern(p.String()); err != nil {
					t.Fatalf("accepted pattern %q: %v", p.String(), err)
				}
			}
			if err := json.Unmarshal(data, &fields); err != nil {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", data, err)
			}
			var user string
			if err := json.Unmarshal(fields["user"], &user); err != nil || user != id.User {
				t.Fatalf("accepted user %q from %q", id.User, data)
			}
			return
		}
		if id.User != "" || id.Channels != nil || !id.Expires.IsZero() {
			t.Fatalf("refused %+v but returned identity %+v", refusal, id)
		}
		switch refusal.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			if why != nil {
				t.Fatalf("backend refusal %+v with a reason %v", refusal, why)
			}
			if err := json.Unmarshal(data, &fields); err != nil {
				t.Fatalf("refusal from %q, which encoding/json refuses: %v", data, err)
			}
			var msg string
			if err := json.Unmarshal(fields["error"], &msg); err != nil || msg != refusal.Msg {
				t.Fatalf("refusal %q from %q", refusal.Msg, data)
			}
		case http.StatusServiceUnavailable:
			if why == nil || refusal.Msg != msgUnavailable {
				t.Fatalf("503 %q, reason %v", refusal.Msg, why)
			}
		default:
			t.Fatalf("refusal status %d", refusal.Status)
		}
	})
}

// TestHookRefusalIsOwned checks that each refusal is a new value, so that
// a caller that changes one changes no other answer.
func TestHookRefusalIsOwned(t *testing.T) {
	_, r1, _ := decodeHookReply([]byte("junk"))
	_, r2, _ := decodeHookReply([]byte("junk"))
	if r1 == r2 {
		t.Fatal("two refusals share one *gateway.HTTPError")
	}
	r1.Msg = "changed"
	if r2.Msg != msgUnavailable || unavailable().Msg != msgUnavailable {
		t.Fatal("changing one refusal changed another")
	}
}

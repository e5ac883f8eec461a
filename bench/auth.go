package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
)

// tokenLifetime is the exp of the tokens the load generator signs: far
// beyond any bounded run, since a node closes a connection whose token
// expired (4003), which a run would count as a disconnect.
const tokenLifetime = 24 * time.Hour

// hookCookie is the cookie a subscriber names its user in, for the hook
// backend of Config.Hook to read back.
const hookCookie = "uid"

// userName is the user subscriber i connects as.
func (c *Config) userName(i int) string { return c.UserPrefix + strconv.Itoa(i) }

// signTokens signs one HS256 token per subscriber, its sub the
// subscriber's user.
func signTokens(cfg *Config, exp time.Time) ([]string, error) {
	key := []byte(cfg.AuthSecret)
	out := make([]string, cfg.Subs)
	for i := range out {
		claims := jwt.RegisteredClaims{Subject: cfg.userName(i), ExpiresAt: jwt.NewNumericDate(exp)}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			return nil, fmt.Errorf("sign token of %s: %w", claims.Subject, err)
		}
		out[i] = s
	}
	return out, nil
}

// hookBackend answers a node's auth requests as a backend of
// auth.mode = "hook" would (PROTOCOL.md §4): the user is the subscriber's
// uid cookie. Its one NATS connection delivers the requests on one
// goroutine, so answered is the only state.
type hookBackend struct {
	nc       *nats.Conn
	answered atomic.Int64
}

// hookRefusal answers a request without a uid cookie.
var hookRefusal = []byte(`{"error":"no uid cookie","status":401}`)

// startHook subscribes to subject on the NATS server at url. It returns
// once the server has the subscription, so that no upgrade finds the hook
// without a responder.
func startHook(url, subject string) (*hookBackend, error) {
	nc, err := nats.Connect(url, nats.Name("pushgrid-bench-hook"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("auth hook: no NATS server answers at %s: %w", url, err)
	}
	h := &hookBackend{nc: nc}
	if _, err := nc.Subscribe(subject, h.answer); err != nil {
		nc.Close()
		return nil, fmt.Errorf("auth hook: subscribe %s: %w", subject, err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		nc.Close()
		return nil, fmt.Errorf("auth hook: subscribe %s: %w", subject, err)
	}
	return h, nil
}

func (h *hookBackend) answer(m *nats.Msg) {
	var req struct {
		Headers map[string]string `json:"headers"`
	}
	reply := hookRefusal
	if json.Unmarshal(m.Data, &req) == nil {
		if user := cookie(req.Headers["Cookie"], hookCookie); user != "" {
			reply, _ = json.Marshal(struct {
				User string `json:"user"`
			}{user})
		}
	}
	if m.Respond(reply) == nil {
		h.answered.Add(1)
	}
}

func (h *hookBackend) close() { h.nc.Close() }

// cookie is the value of the cookie name in a Cookie header, "" when it
// has none.
func cookie(header, name string) string {
	cs, _ := http.ParseCookie(header)
	for _, c := range cs {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

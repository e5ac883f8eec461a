package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

type nullBus struct{}

func (nullBus) Subscribe(string) error            { return nil }
func (nullBus) Unsubscribe(string)                {}
func (nullBus) Publish(string, []byte) error      { return nil }
func (nullBus) PublishEvent(string, []byte) error { return nil }
func (nullBus) Listening(string) bool             { return false }
func (nullBus) Send(context.Context, string, string, string, []byte, bool) ([]byte, error) {
	return nil, session.ErrNoHandler
}

func status(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code
}

// TestReadiness: /readyz is 503 before Start and from the first moment of
// Shutdown; /healthz is 200 throughout; /ws is refused while draining.
func TestReadiness(t *testing.T) {
	hub, err := session.New(session.Config{Node: "g1"}, nullBus{}, nullBus{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Listen: "127.0.0.1:0", Workers: 2, Drain: 50 * time.Millisecond}, hub)
	if err != nil {
		t.Fatal(err)
	}
	h := g.srv.Handler
	if status(h, "/readyz") != 503 || status(h, "/healthz") != 200 {
		t.Fatal("ready before Start")
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status(h, "/readyz") != 200 {
		t.Fatal("not ready after Start")
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal("second Shutdown:", err)
	}
	if status(h, "/readyz") != 503 || status(h, "/healthz") != 200 || status(h, "/ws") != 503 {
		t.Fatal("still ready while drained")
	}
	if status(h, "/nope") != 404 {
		t.Fatal("unknown path")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []Config{
		{Listen: "nope"},
		{Workers: -1},
		{Sticky: "sometimes"},
		{TrustedProxies: []string{"x"}},
		{Auth: "jwt"},
		{Drain: -time.Second},
	}
	hub, _ := session.New(session.Config{}, nullBus{}, nullBus{}, nil)
	for _, c := range cases {
		if _, err := New(c, hub); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

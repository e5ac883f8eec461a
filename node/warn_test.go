package node_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// syncBuffer is a log destination safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOpenGatewayWarns: a gateway beyond loopback where clients name
// themselves logs one warning at start; on loopback, or with an
// Authorize hook, none. (The gateway binds every interface on an
// ephemeral port for a moment; nothing is sent.)
func TestOpenGatewayWarns(t *testing.T) {
	const warning = "auth.mode is none and the gateway listens beyond loopback"
	authorize := node.WithAuthorize(func(*http.Request, netip.Addr) (session.Identity, error) {
		return session.Identity{User: "u"}, nil
	})
	for _, c := range []struct {
		name   string
		listen string
		opts   []node.Option
		warns  bool
	}{
		{"every interface, no auth", ":0", nil, true},
		{"loopback, no auth", "127.0.0.1:0", nil, false},
		{"every interface, Authorize", ":0", []node.Option{authorize}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, "w1")
			cfg.Gateway.Listen = c.listen
			var logs syncBuffer
			n, err := node.New(cfg, append(c.opts, node.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(logs.String(), warning); got != map[bool]int{true: 1, false: 0}[c.warns] {
				t.Fatalf("%d warnings, want warns=%v; log:\n%s", got, c.warns, logs.String())
			}
		})
	}
}

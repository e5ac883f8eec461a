package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node", Config{}, "node:"},
		{"node not a token", Config{Node: "a.b"}, "node:"},
		{"bad listen", Config{Node: "n", Listen: "nope"}, "nats.listen:"},
		{"bad cluster listen", Config{Node: "n", ClusterListen: "nope"}, "nats.cluster_listen:"},
		{"bad seed", Config{Node: "n", Seeds: []string{"::"}}, "nats.seeds:"},
		{"bad url", Config{Node: "n", URL: "nats://a b"}, "nats.url:"},
		{"bad prefix", Config{Node: "n", Prefix: "a.b"}, "nats.prefix:"},
		{"heartbeat too short", Config{Node: "n", Heartbeat: 10 * time.Millisecond}, "nats.heartbeat:"},
		{"heartbeat too long", Config{Node: "n", Heartbeat: 2 * time.Minute}, "nats.heartbeat:"},
		{"negative max payload", Config{Node: "n", MaxPayload: -1}, "session.max_message_bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.HasPrefix(err.Error(), c.want) && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %s", err, c.want)
			}
			if strings.Contains(err.Error(), "broker.") {
				t.Fatalf("error %q names a broker. key; the config file says nats.", err)
			}
		})
	}
	for _, hb := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, time.Minute} {
		if _, err := New(Config{Node: "n", Heartbeat: hb}); err != nil {
			t.Errorf("heartbeat %v: %v", hb, err)
		}
	}
}

// TestMaxPayload: what this node publishes must fit the server it publishes
// to. The embedded server is raised to fit; an external one that is too
// small is an error at start.
func TestMaxPayload(t *testing.T) {
	t.Run("embedded raised", func(t *testing.T) {
		b, err := New(Config{Node: "big", Listen: "127.0.0.1:0", MaxPayload: 2 << 20, Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		if err := b.Start(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(context.Background())
		if got := b.Conn().MaxPayload(); got < 2<<20 {
			t.Fatalf("max payload %d, want at least %d", got, 2<<20)
		}
		if err := b.Subscribe("big"); err != nil {
			t.Fatal(err)
		}
		payload := strings.Repeat("x", 1<<20+500)
		if err := b.Publish("big", []byte(payload)); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
			if !rec.has("chan big " + payload) {
				return errors.New("not delivered")
			}
			return nil
		})
	})
	t.Run("embedded never lowered", func(t *testing.T) {
		b, err := New(Config{Node: "small", Listen: "127.0.0.1:0", MaxPayload: 1000, Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background(), &recorder{}); err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(context.Background())
		if got := b.Conn().MaxPayload(); got != server.MAX_PAYLOAD_SIZE {
			t.Fatalf("max payload %d, want the NATS default %d", got, server.MAX_PAYLOAD_SIZE)
		}
	})
	t.Run("external too small", func(t *testing.T) {
		opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(5 * time.Second) {
			t.Fatal("nats server not ready")
		}
		defer ns.Shutdown()
		b, err := New(Config{Node: "ext", URL: ns.ClientURL(), MaxPayload: 2 << 20, Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		err = b.Start(context.Background(), &recorder{})
		if err == nil {
			_ = b.Shutdown(context.Background())
			t.Fatal("started on a server whose max_payload is too small")
		}
		for _, want := range []string{"max_payload", "session.max_message_bytes", "1048576"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %s", err, want)
			}
		}
		// The same server is fine for what fits.
		ok, err := New(Config{Node: "ext", URL: ns.ClientURL(), MaxPayload: 1 << 20, Heartbeat: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := ok.Start(context.Background(), &recorder{}); err != nil {
			t.Fatal(err)
		}
		_ = ok.Shutdown(context.Background())
	})
}

// TestDefaultPrefix: the prefix a Config starts with is the protocol's.
func TestDefaultPrefix(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.Prefix != DefaultPrefix {
		t.Fatalf("default prefix %q, DefaultPrefix %q", c.Prefix, DefaultPrefix)
	}
}

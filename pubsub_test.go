package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/internal/testcert"
)

const pubsubToken = "pubsub-token-0123456789"

// pubsubReceiver keeps the channel messages a node receives.
type pubsubReceiver struct {
	mu  sync.Mutex
	got []string // "channel payload"
}

func (r *pubsubReceiver) DeliverChannel(c string, p []byte) {
	r.mu.Lock()
	r.got = append(r.got, c+" "+string(p))
	r.mu.Unlock()
}
func (r *pubsubReceiver) DeliverUser(string, []byte)                   {}
func (r *pubsubReceiver) DeliverConn(string, []byte)                   {}
func (r *pubsubReceiver) DeliverAll([]byte)                            {}
func (r *pubsubReceiver) DeliverStored(string, uint64, uint64, []byte) {}

func (r *pubsubReceiver) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == s {
			return true
		}
	}
	return false
}

// pubsubNode starts a broker alone, with cfg's token and TLS, subscribed
// to channel news.
func pubsubNode(t *testing.T, cfg broker.Config) (*broker.Broker, *pubsubReceiver) {
	t.Helper()
	cfg.Node, cfg.Listen, cfg.Heartbeat = "ps", "127.0.0.1:0", 200*time.Millisecond
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pubsubReceiver{}
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	if err := b.Subscribe("news"); err != nil {
		t.Fatal(err)
	}
	return b, rec
}

// TestPubToken: pub presents --token (or the token in the URL) to a node
// with nats.token; without it the node refuses it, and pub says what to do.
func TestPubToken(t *testing.T) {
	b, rec := pubsubNode(t, broker.Config{Token: pubsubToken})
	inURL := strings.Replace(b.ClientURL(), "nats://", "nats://"+pubsubToken+"@", 1)
	for name, args := range map[string][]string{
		"flag": {"--server", b.ClientURL(), "--token", pubsubToken},
		"url":  {"--server", inURL},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), append(append([]string{"pub"}, args...), "--channel", "news", name), nil, &out, &errOut); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
				if !rec.has("news " + name) {
					return errors.New("not delivered")
				}
				return nil
			})
		})
	}
	for name, args := range map[string][]string{
		"no token":     {"--server", b.ClientURL()},
		"wrong token":  {"--server", b.ClientURL(), "--token", "wrong-token-0123456789"},
		"wrong in url": {"--server", strings.Replace(b.ClientURL(), "nats://", "nats://wrong-token-0123456789@", 1)},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(append([]string{"pub"}, args...), "--channel", "news", "{}"), nil, &out, &errOut)
			if err == nil {
				t.Fatal("published")
			}
			for _, want := range []string{"refused the connection", "Authorization Violation", "--token"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "wrong-token") {
				t.Errorf("error %q repeats the token", err)
			}
		})
	}
	// A prefix the nodes do not use is a subject backends may not publish.
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"pub", "--server", b.ClientURL(), "--token", pubsubToken, "--prefix", "pg", "--all", "{}"}, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "permissions violation") || !strings.Contains(err.Error(), "--prefix") {
		t.Fatalf("pub with another prefix: %v", err)
	}
}

// TestPubTLS: pub trusts --tls-ca for a node whose client port has TLS.
func TestPubTLS(t *testing.T) {
	certs := testcert.New(t)
	b, rec := pubsubNode(t, broker.Config{Token: pubsubToken, TLSCert: certs.Cert, TLSKey: certs.Key})
	var out, errOut bytes.Buffer
	args := []string{"pub", "--server", b.ClientURL(), "--token", pubsubToken, "--tls-ca", certs.CA, "--channel", "news", "tls"}
	if err := run(context.Background(), args, nil, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if !rec.has("news tls") {
			return errors.New("not delivered")
		}
		return nil
	})
	if err := run(context.Background(), []string{"pub", "--server", b.ClientURL(), "--token", pubsubToken, "--channel", "news", "x"}, nil, &out, &errOut); err == nil {
		t.Fatal("published without trusting the node's CA")
	}
}

// lockedBuffer is a bytes.Buffer that a command may write while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSubToken: sub presents --token and prints what the node publishes
// for backends; a subject that is the nodes' own is refused, and sub says
// which ones a backend may have.
func TestSubToken(t *testing.T) {
	b, _ := pubsubNode(t, broker.Config{Token: pubsubToken})
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sub", "--server", b.ClientURL(), "--token", pubsubToken, "push.events.>"}, nil, &out, &errOut)
	}()
	awaitSubject(t, b.Server(), b.Subjects().Event("connect"), 1)
	if err := b.PublishEvent("connect", []byte(`{"conn":"c1"}`)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if want := "push.events.connect\n{\"conn\":\"c1\"}\n"; out.String() != want {
			return errors.New("printed " + out.String())
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}

	var out2, errOut2 bytes.Buffer
	err := run(context.Background(), []string{"sub", "--server", b.ClientURL(), "--token", pubsubToken, "push.chan.news"}, nil, &out2, &errOut2)
	if err == nil || !strings.Contains(err.Error(), "permissions violation") || !strings.Contains(err.Error(), "<prefix>.events.>") {
		t.Fatalf("sub to a channel: %v", err)
	}
	if err := run(context.Background(), []string{"sub", "--server", b.ClientURL(), "push.events.>"}, nil, &out2, &errOut2); err == nil ||
		!strings.Contains(err.Error(), "--token") {
		t.Fatalf("sub without the token: %v", err)
	}
}

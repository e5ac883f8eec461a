package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/pushgrid/pushgrid/internal/testcert"
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

// TestLockConfig: the keys that lock the NATS ports refuse what cannot
// work or would leave a port open, naming the key and never repeating a
// secret.
func TestLockConfig(t *testing.T) {
	certs := testcert.New(t)
	other := testcert.New(t)
	const secret = "0123456789abcdef"
	tls := func(c Config) Config {
		c.TLSCert, c.TLSKey, c.TLSCA = certs.Cert, certs.Key, certs.CA
		return c
	}
	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"token too short", Config{Token: "short-token"}, "nats.token: 11 bytes; want 16 to 256"},
		{"token too long", Config{Token: strings.Repeat("t", 257)}, "nats.token: 257 bytes"},
		{"token with a space", Config{Token: "0123456789 abcdef"}, "nats.token: byte 11 is a space"},
		{"secret too short", Config{ClusterSecret: "abc"}, "nats.cluster_secret: 3 bytes"},
		{"secret not ASCII", Config{ClusterSecret: "0123456789abcdéf"}, "nats.cluster_secret: byte 15"},
		{"cert without key", Config{TLSCert: certs.Cert}, "nats.tls_key: not set, but nats.tls_cert is"},
		{"key without cert", Config{TLSKey: certs.Key}, "nats.tls_cert: not set, but nats.tls_key is"},
		{"no cert file", Config{TLSCert: "/nonexistent/cert.pem", TLSKey: certs.Key}, "nats.tls_cert: open /nonexistent/cert.pem"},
		{"no key file", Config{TLSCert: certs.Cert, TLSKey: "/nonexistent/key.pem"}, "nats.tls_key: open /nonexistent/key.pem"},
		{"key of another certificate", Config{TLSCert: certs.Cert, TLSKey: other.Key}, "nats.tls_cert:"},
		{"no CA file", Config{TLSCert: certs.Cert, TLSKey: certs.Key, TLSCA: "/nonexistent/ca.pem"}, "nats.tls_ca: open"},
		{"CA file without a certificate", Config{TLSCert: certs.Cert, TLSKey: certs.Key, TLSCA: certs.Key}, "nats.tls_ca: " + certs.Key + " holds no PEM certificate"},
		{"CA without TLS", Config{TLSCA: certs.CA}, "nats.tls_ca: needs nats.tls_cert and nats.tls_key"},
		{"route TLS without a CA", Config{ClusterListen: "127.0.0.1:0", TLSCert: certs.Cert, TLSKey: certs.Key}, "nats.tls_ca: routes with TLS need"},
		{"client port on every interface", Config{Listen: ":4222"}, "nats.token: nats.listen \":4222\" is beyond loopback"},
		{"client port on 0.0.0.0", Config{Listen: "0.0.0.0:4222"}, "nats.token:"},
		{"client port on ::", Config{Listen: "[::]:4222"}, "nats.token:"},
		{"client port on a LAN address", Config{Listen: "10.0.0.2:4222"}, "nats.token:"},
		{"client port on a host name", Config{Listen: "node1.example:4222"}, "nats.token:"},
		{"routes on every interface", Config{ClusterListen: "0.0.0.0:6222"}, "nats.cluster_secret: routes listen beyond loopback"},
		{"routes on the seeds' default", Config{Seeds: []string{"nats://10.0.0.2:6222"}}, `nats.cluster_secret: routes listen beyond loopback (nats.cluster_listen ":6222"`},
		{"seed with a password", Config{ClusterListen: "127.0.0.1:0", Seeds: []string{"nats://u:" + secret + "@10.0.0.2:6222"}}, "nats.seeds:"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Node = "n"
			_, err := New(c.cfg)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want %q", err, c.want)
			}
			for _, s := range []string{c.cfg.Token, c.cfg.ClusterSecret, secret} {
				if s != "" && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q repeats a secret", err)
				}
			}
		})
	}
	good := []struct {
		name string
		cfg  Config
	}{
		{"localhost", Config{Listen: "localhost:4222", ClusterListen: "localhost:6222"}},
		{"loopback IPs", Config{Listen: "[::1]:4222", ClusterListen: "127.0.0.2:6222"}},
		{"open client port with a token", Config{Listen: ":4222", Token: secret}},
		{"open routes with a secret", Config{ClusterListen: "0.0.0.0:6222", ClusterSecret: secret}},
		{"seeds with a secret", Config{Seeds: []string{"nats://10.0.0.2:6222"}, ClusterSecret: secret}},
		{"TLS with routes", tls(Config{ClusterListen: "127.0.0.1:0"})},
		{"TLS without routes or CA", Config{TLSCert: certs.Cert, TLSKey: certs.Key}},
		// External NATS: no port of its own, the token and the CA are what
		// it presents and trusts.
		{"external NATS", Config{URL: "nats://10.0.0.2:4222", Listen: ":4222", ClusterListen: ":6222", Token: secret, TLSCA: certs.CA}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Node = "n"
			if _, err := New(c.cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

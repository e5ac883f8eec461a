package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/pushgrid/pushgrid/internal/testcert"
)

const (
	testToken  = "backend-token-0123456789"
	testSecret = "cluster-secret-0123456789"
)

// backend connects to b's client port as a backend does, with opts.
func backend(t testing.TB, b *Broker, opts ...nats.Option) *nats.Conn {
	t.Helper()
	// Refusals are what most tests look for: nats.go would print each.
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := nats.Connect(b.ClientURL(), append([]nats.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// refused reports the permissions violation the server answered nc with,
// once everything nc sent before has been processed.
func refused(t testing.TB, nc *nats.Conn) error {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		return err
	}
	return nil
}

// TestClientToken: with nats.token every client must present it, in the
// URL or as an option; the node's own connection needs none of it.
func TestClientToken(t *testing.T) {
	b, rec := startConfig(t, Config{Node: "tok", Token: testToken})
	for name, opts := range map[string][]nats.Option{
		"no token":    nil,
		"wrong token": {nats.Token("another-token-0123456789")},
		"user":        {nats.UserInfo(nodeUser, "guess")},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(b.ClientURL(), opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("error %v, want an authorization violation", err)
			}
		})
	}
	if err := b.Subscribe("room"); err != nil {
		t.Fatal(err)
	}
	// The server holds the subscription once the node's connection has
	// flushed: a publish before that would find no interest.
	must(t, b.Conn().Flush())
	inURL, err := nats.Connect(strings.Replace(b.ClientURL(), "nats://", "nats://"+testToken+"@", 1))
	must(t, err)
	defer inURL.Close()
	for name, nc := range map[string]*nats.Conn{"option": backend(t, b, nats.Token(testToken)), "url": inURL} {
		t.Run(name, func(t *testing.T) {
			if err := nc.Publish(b.Subjects().Channel("room"), []byte(name)); err != nil {
				t.Fatal(err)
			}
			checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
				if !rec.has("chan room " + name) {
					return errors.New("not delivered")
				}
				return nil
			})
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBackendPermissions: a backend, token or not, publishes what reaches
// clients and subscribes to what nodes publish for it, and nothing of the
// nodes' own.
func TestBackendPermissions(t *testing.T) {
	for _, token := range []string{"", testToken} {
		t.Run(fmt.Sprintf("token %v", token != ""), func(t *testing.T) {
			b, rec := startConfig(t, Config{Node: "perm", Token: token})
			s := b.Subjects()
			var opts []nats.Option
			if token != "" {
				opts = append(opts, nats.Token(token))
			}
			for _, subject := range []string{s.Channel("a.b"), s.User("u"), s.Conn("c"), s.All(), s.Prefix + ".api.stats"} {
				nc := backend(t, b, opts...)
				if err := nc.Publish(subject, []byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := refused(t, nc); err != nil {
					t.Errorf("publish %s: %v", subject, err)
				}
			}
			checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
				for _, want := range []string{"user u x", "conn c x", "all * x"} {
					if !rec.has(want) {
						return fmt.Errorf("no %q", want)
					}
				}
				return nil
			})
			for _, subject := range []string{s.Recv("order"), s.Prefix + ".recv.>", s.Event("connect"), s.Prefix + ".events.>",
				s.Auth(), s.Node("n2"), s.Node("*"), s.Prefix + ".node.>", "_INBOX.>"} {
				nc := backend(t, b, opts...)
				if _, err := nc.SubscribeSync(subject); err != nil {
					t.Fatal(err)
				}
				if err := refused(t, nc); err != nil {
					t.Errorf("subscribe %s: %v", subject, err)
				}
			}
			for _, subject := range []string{s.Node("n2"), s.claim("n2"), s.sync("n2"), s.Recv("order"), s.Event("connect"),
				s.Auth(), s.inbox() + ".x", "_INBOX.x", "orders", "$JS.API.INFO"} {
				nc := backend(t, b, opts...)
				if err := nc.Publish(subject, []byte("{}")); err != nil {
					t.Fatal(err)
				}
				if refused(t, nc) == nil {
					t.Errorf("a backend published on %s", subject)
				}
			}
			for _, subject := range []string{s.claim("n2"), s.allClaims(), s.sync("n2"), s.allSyncs(), s.inbox() + ".>", s.Channel("a"),
				s.Prefix + ".chan.>", s.allUsers(), s.allConns(), s.All(), s.Prefix + ".>", ">", "orders"} {
				nc := backend(t, b, opts...)
				if _, err := nc.SubscribeSync(subject); err != nil {
					t.Fatal(err)
				}
				if refused(t, nc) == nil {
					t.Errorf("a backend subscribed to %s", subject)
				}
			}
		})
	}
}

// TestBackendsCannotPoseAsNodes: on a three-node cluster, a backend's fake
// "leaving" beat and a beat for a node that does not exist are refused,
// and change no node's view; a backend sees the beats but not the name
// claims, and no reply meant for a node.
func TestBackendsCannotPoseAsNodes(t *testing.T) {
	logs := newLogCapture()
	start := func(name string, seeds ...string) (*Broker, *recorder) {
		return startConfig(t, Config{Node: name, Seeds: seeds, ClusterSecret: testSecret, Token: testToken,
			Logger: slog.New(logs).With("node", name)})
	}
	n1, _ := start("n1")
	n2, _ := start("n2", n1.ClusterURL())
	n3, _ := start("n3", n1.ClusterURL())
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "n1 n2 n3 ", 3*time.Second)
	}
	s := n1.Subjects()

	// What backends on node 1 see of nodes' subjects: every beat and
	// claim through the widest subscriptions they may hold.
	watch := backend(t, n1, nats.Token(testToken))
	seen := make(chan *nats.Msg, 1024)
	for _, subject := range []string{s.Prefix + ".node.>", s.Prefix + ".node.*.*", "_INBOX.>"} {
		if _, err := watch.ChanSubscribe(subject, seen); err != nil {
			t.Fatal(err)
		}
	}
	if err := refused(t, watch); err != nil {
		t.Fatal(err)
	}

	attacker := backend(t, n3, nats.Token(testToken))
	leave, _ := json.Marshal(Node{Name: "n2", Leaving: true})
	fake, _ := json.Marshal(Node{Name: "ghost", At: time.Now(), Instance: "x", Seq: 1})
	for subject, payload := range map[string][]byte{s.Node("n2"): leave, s.Node("ghost"): fake} {
		if err := attacker.Publish(subject, payload); err != nil {
			t.Fatal(err)
		}
		if refused(t, attacker) == nil {
			t.Fatalf("a backend published on %s", subject)
		}
	}
	// A backend cannot answer name claims either.
	if _, err := attacker.Subscribe(s.allClaims(), func(m *nats.Msg) {
		ans, _ := json.Marshal(claimAnswer{From: "n3", Held: true, Self: true, Instance: "x"})
		_ = m.Respond(ans)
	}); err != nil {
		t.Fatal(err)
	}
	if refused(t, attacker) == nil {
		t.Fatal("a backend subscribed to name claims")
	}

	// A fourth node's start asks a name claim; it is answered by nodes
	// alone, and no backend sees it or its answer.
	n4, _ := start("n4", n1.ClusterURL())
	// A node's request to a backend: the reply comes back to the node only.
	responder := backend(t, n2, nats.Token(testToken))
	if _, err := responder.Subscribe(s.Recv("order"), func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	must(t, responder.Flush())
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		reply, err := n1.Send(ctx, "order", "u", "c", []byte("{}"), true)
		if err != nil || string(reply) != "ok" {
			return fmt.Errorf("reply %q, %v", reply, err)
		}
		return nil
	})

	// What the backend saw is real beats only, up to two rounds of them
	// from every node after the attacks: what the attacker had got
	// through would have come before the second, on the same route.
	beat := func(m *nats.Msg) string {
		var n Node
		if err := json.Unmarshal(m.Data, &n); err != nil || m.Subject != s.Node(n.Name) {
			t.Fatalf("a backend saw %s: %q", m.Subject, m.Data)
		}
		if n.Leaving || n.Instance == "x" {
			t.Fatalf("a backend's beat went through: %s", m.Data)
		}
		return n.Name
	}
	for len(seen) > 0 {
		beat(<-seen)
	}
	beats := map[string]int{}
	deadline := time.After(5 * time.Second)
	for beats["n1"] < 2 || beats["n2"] < 2 || beats["n3"] < 2 || beats["n4"] < 2 {
		select {
		case m := <-seen:
			beats[beat(m)]++
		case <-deadline:
			t.Fatalf("beats seen: %v", beats)
		}
	}
	for _, b := range []*Broker{n1, n2, n3, n4} {
		checkView(t, b, "n1 n2 n3 n4 ", time.Second)
	}
	if n := logs.count("node left"); n != 0 {
		t.Fatalf("%d nodes left:\n%s", n, strings.Join(logs.all(), "\n"))
	}
}

// TestAuthRequest: the node asks on <prefix>.auth and a backend on
// another node answers; without one it is told at once, and a backend
// that does not answer costs ctx's deadline.
func TestAuthRequest(t *testing.T) {
	n1, _ := startConfig(t, Config{Node: "h1", Token: testToken})
	n2, _ := startConfig(t, Config{Node: "h2", Token: testToken, Seeds: []string{n1.ClusterURL()}})
	checkView(t, n1, "h1 h2 ", 3*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := n1.AuthRequest(ctx, []byte("{}")); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("no backend: %v, want ErrNoResponders", err)
	}

	hook := backend(t, n2, nats.Token(testToken))
	if _, err := hook.Subscribe(n2.Subjects().Auth(), func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"user":"alice","asked":` + string(m.Data) + `}`))
	}); err != nil {
		t.Fatal(err)
	}
	must(t, hook.Flush())
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		reply, err := n1.AuthRequest(ctx, []byte(`{"node":"h1"}`))
		if err != nil || string(reply) != `{"user":"alice","asked":{"node":"h1"}}` {
			return fmt.Errorf("reply %q, %v", reply, err)
		}
		return nil
	})
	hook.Close()

	silent := backend(t, n1, nats.Token(testToken))
	if _, err := silent.SubscribeSync(n1.Subjects().Auth()); err != nil {
		t.Fatal(err)
	}
	must(t, silent.Flush())
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := n1.AuthRequest(short, []byte("{}")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent backend: %v, want the deadline", err)
	}

	var idle Broker
	if _, err := idle.AuthRequest(ctx, nil); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("before Start: %v", err)
	}
}

// TestClusterSecret: nodes of one secret form a cluster; a node with
// another secret or none is refused both ways, never joins a view, and
// both sides say why once, not on every retry.
func TestClusterSecret(t *testing.T) {
	logs := newLogCapture()
	start := func(name, secret string, seeds ...string) *Broker {
		b, _ := startConfig(t, Config{Node: name, Seeds: seeds, ClusterSecret: secret, Logger: slog.New(logs).With("node", name)})
		return b
	}
	n1 := start("s1", testSecret)
	n2 := start("s2", testSecret, n1.ClusterURL())
	n3 := start("s3", testSecret, n2.ClusterURL()) // meets s1 through s2's gossip
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "s1 s2 s3 ", 3*time.Second)
	}
	// Name claims cross the secured routes.
	if _, err := startErrConfig(t, Config{Node: "s2", Seeds: []string{n1.ClusterURL()}, ClusterSecret: testSecret}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("a second s2: %v", err)
	}

	// Refused nodes start (their seeds are no proof of anything) and keep
	// to themselves.
	var wg sync.WaitGroup
	var other, none *Broker
	wg.Add(2)
	go func() { defer wg.Done(); other = start("x1", "another-secret-0123456789", n1.ClusterURL()) }()
	go func() { defer wg.Done(); none = start("x2", "", n1.ClusterURL()) }()
	wg.Wait()
	// And the other way round: a node with the secret that dials a node
	// without one is refused by it.
	n4 := start("s4", testSecret, none.ClusterURL(), n1.ClusterURL())
	for _, b := range []*Broker{n1, n2, n3, n4} {
		checkView(t, b, "s1 s2 s3 s4 ", 3*time.Second)
	}
	checkView(t, other, "x1 ", time.Second)
	checkView(t, none, "x2 ", time.Second)

	port := func(b *Broker) string { return strings.TrimPrefix(b.ClusterURL(), "nats://") }
	want := []struct {
		node string
		says []string
	}{
		{"s1", []string{"ERROR", "route refused: the node at 127.0.0.1 presents another nats.cluster_secret"}},
		{"s1", []string{"ERROR", "route refused: the node at 127.0.0.1 presents no nats.cluster_secret"}},
		{"x1", []string{"ERROR", "route to nats://" + port(n1) + " refused: authorization violation: is nats.cluster_secret the same on every node?"}},
		{"x2", []string{"ERROR", "route to nats://" + port(n1) + " refused: authorization violation"}},
		{"x2", []string{"ERROR", "route refused: the node at 127.0.0.1 presents a nats.cluster_secret, and this node has none"}},
		{"s4", []string{"ERROR", "route to nats://" + port(none) + " refused: authorization violation"}},
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		for _, w := range want {
			if logs.count(append(w.says, "node="+w.node)...) == 0 {
				return fmt.Errorf("node %s has not said %q", w.node, w.says[1])
			}
		}
		return nil
	})
	// The routes retry about once a second: the retries add nothing. (A
	// refused route may also be reset while the dialling node still
	// writes: NATS says that too, once.)
	time.Sleep(2200 * time.Millisecond)
	for _, w := range want {
		if n := logs.count(append(w.says, "node="+w.node)...); n != 1 {
			t.Errorf("node %s said %q %d times, want once", w.node, w.says[1], n)
		}
	}
	said := map[string]int{}
	for _, l := range logs.all() {
		if strings.HasPrefix(l, "WARN") || strings.HasPrefix(l, "ERROR") {
			said[retryNumbers.ReplaceAllString(l, "N")]++
		}
		if strings.Contains(l, testSecret) {
			t.Errorf("a line holds the secret: %s", l)
		}
	}
	for l, n := range said {
		if n > 1 {
			t.Errorf("said %d times: %s", n, l)
		}
	}
}

// retryNumbers are what changes from one retry of a route to the next:
// ports, connection ids, attempt numbers.
var retryNumbers = regexp.MustCompile(`:\d+|attempt \d+`)

// startErrConfig starts a node like startConfig and returns Start's error.
func startErrConfig(t testing.TB, cfg Config) (*Broker, error) {
	t.Helper()
	cfg.Listen, cfg.ClusterListen, cfg.Heartbeat = "127.0.0.1:0", "127.0.0.1:0", 200*time.Millisecond
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background(), &recorder{})
	if err == nil {
		t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	}
	return b, err
}

// TestTLS: with a certificate the client port takes only TLS clients that
// trust the CA, and routes only peers whose certificate the CA signed.
func TestTLS(t *testing.T) {
	certs := testcert.New(t)
	start := func(name string, seeds ...string) (*Broker, *recorder) {
		return startConfig(t, Config{Node: name, Seeds: seeds, ClusterSecret: testSecret, Token: testToken,
			TLSCert: certs.Cert, TLSKey: certs.Key, TLSCA: certs.CA})
	}
	n1, rec1 := start("t1")
	n2, _ := start("t2", n1.ClusterURL())
	n3, _ := start("t3", n1.ClusterURL())
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "t1 t2 t3 ", 3*time.Second)
	}
	if !strings.HasPrefix(n1.ClientURL(), "tls://") {
		t.Fatalf("client URL %s", n1.ClientURL())
	}
	// The duplicate name check reads the seeds' INFO over TLS too.
	if _, err := startErrConfig(t, Config{Node: "t2", Seeds: []string{n1.ClusterURL()}, ClusterSecret: testSecret,
		TLSCert: certs.Cert, TLSKey: certs.Key, TLSCA: certs.CA}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("a second t2: %v", err)
	}

	// A backend trusting the CA reaches a channel on another node.
	must(t, n1.Subscribe("secure"))
	nc := backend(t, n3, nats.Token(testToken), nats.Secure(certs.ClientConfig()))
	checkFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		if err := nc.Publish(n3.Subjects().Channel("secure"), []byte("x")); err != nil {
			return err
		}
		_ = nc.Flush()
		time.Sleep(20 * time.Millisecond)
		if !rec1.has("chan secure x") {
			return errors.New("not delivered")
		}
		return nil
	})
	// One that does not trust it is refused.
	if nc, err := nats.Connect(n1.ClientURL(), nats.Token(testToken)); err == nil {
		nc.Close()
		t.Fatal("a client that does not trust the CA connected")
	}

	// Nodes with the secret but no TLS, or a certificate of another CA,
	// never join.
	stranger := testcert.New(t)
	plain, _ := startConfig(t, Config{Node: "u1", Seeds: []string{n1.ClusterURL()}, ClusterSecret: testSecret})
	foreign, _ := startConfig(t, Config{Node: "u2", Seeds: []string{n1.ClusterURL()}, ClusterSecret: testSecret,
		TLSCert: stranger.Cert, TLSKey: stranger.Key, TLSCA: stranger.CA})
	// Half foreign: its certificate is not the CA's, though it trusts it.
	half, _ := startConfig(t, Config{Node: "u3", Seeds: []string{n1.ClusterURL()}, ClusterSecret: testSecret,
		TLSCert: stranger.Cert, TLSKey: stranger.Key, TLSCA: certs.CA})
	// What is tested is that nothing happens: routes retry about once a
	// second, and a route that is let in is up within milliseconds.
	time.Sleep(time.Second)
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "t1 t2 t3 ", time.Second)
		if got := b.Routes(); got != 2 {
			t.Errorf("%s has %d routes, want 2", b.cfg.Node, got)
		}
	}
	for _, b := range []*Broker{plain, foreign, half} {
		checkView(t, b, b.cfg.Node+" ", time.Second)
	}
}

// TestExternalNATS: with nats.url the node presents nats.token and trusts
// nats.tls_ca for the server it joins.
func TestExternalNATS(t *testing.T) {
	certs := testcert.New(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certs.Cert, KeyFile: certs.Key})
	must(t, err)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Authorization: testToken, TLSConfig: tc})
	must(t, err)
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)

	start := func(cfg Config) error {
		cfg.Node, cfg.URL, cfg.Heartbeat = "ext", ns.ClientURL(), 200*time.Millisecond
		b, err := New(cfg)
		must(t, err)
		err = b.Start(context.Background(), &recorder{})
		if err == nil {
			_ = b.Shutdown(context.Background())
		}
		return err
	}
	if err := start(Config{Token: testToken, TLSCA: certs.CA}); err != nil {
		t.Fatal(err)
	}
	if err := start(Config{TLSCA: certs.CA}); err == nil {
		t.Fatal("started without the token")
	}
	if err := start(Config{Token: testToken}); err == nil {
		t.Fatal("started without trusting the server's CA")
	}
}

package history

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/session"
)

// startStore starts a NATS server with JetStream on loopback and a store
// of rules on it, its streams created.
func startStore(t *testing.T, rules ...session.Rule) (*Store, *nats.Conn) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	s, nc := openStore(t, srv.ClientURL(), rules)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ensure(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return s, nc
}

// openStore connects to the NATS server at url and starts a store of
// rules on it, its streams not yet created.
func openStore(t *testing.T, url string, rules []session.Rule) (*Store, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := New("push", rules, Config{Store: StoreMemory}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(nc); err != nil {
		t.Fatal(err)
	}
	return s, nc
}

// TestTail: the last n messages of a channel, whether its messages are
// dense or sparse in the stream's sequence, and n below, at and above
// what is stored; reading about n of them, not the channel's history.
func TestTail(t *testing.T) {
	s, nc := startStore(t, session.Rule{Pattern: session.MustPattern("h.>"), History: 10000, HistoryTTL: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// h.dense gets 49 of every 50 messages, h.sparse one; 5,000 in all.
	for i := 0; i < 5000; i++ {
		ch := "h.dense"
		if i%50 == 7 {
			ch = "h.sparse"
		}
		if _, err := s.Publish(ctx, ch, []byte(fmt.Sprint(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	// Every message the store reads comes to an inbox of nc.
	spy, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var read atomic.Int64
	if _, err := spy.Subscribe("_INBOX.>", func(*nats.Msg) { read.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	// settled returns the count once the spy has had every copy: a flush
	// alone did not always wait for those of the read just before (a CI
	// run counted the 100 of the Since above against a Tail(1)).
	settled := func() int64 {
		for {
			v := read.Load()
			_ = spy.Flush()
			time.Sleep(20 * time.Millisecond)
			if read.Load() == v {
				return v
			}
		}
	}
	for _, ch := range []string{"h.dense", "h.sparse"} {
		last, err := s.Last(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.Since(ctx, ch, 1, last, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 3, 10, 99, 100, len(all) - 1, len(all), len(all) + 5} {
			before := settled()
			got, err := s.Tail(ctx, ch, n, last)
			if err != nil {
				t.Fatal(err)
			}
			want := all[max(0, len(all)-n):]
			if len(got) != len(want) || len(got) > 0 && (got[0].Seq != want[0].Seq || got[len(got)-1].Seq != last) {
				t.Fatalf("%s: Tail(%d): %d messages from %v, want %d from %v", ch, n, len(got), seqs(got), len(want), seqs(want))
			}
			// Each count reads one message and an end of batch; the
			// doubling and halving steps are at most 2 log2(5000).
			if r := settled() - before; r > int64(2*n+100) && r > int64(len(all)/2) {
				t.Errorf("%s: Tail(%d) read %d messages", ch, n, r)
			}
		}
	}
	if got, err := s.Tail(ctx, "h.none", 5, 100); err != nil || len(got) != 0 {
		t.Fatalf("a channel with nothing stored: %v %v", got, err)
	}
	if _, err := s.Tail(ctx, "other", 5, 100); err == nil {
		t.Fatal("a channel without history: no error")
	}
}

func seqs(msgs []Message) []uint64 {
	var out []uint64
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	if len(out) > 6 {
		out = append(out[:3], out[len(out)-3:]...)
	}
	return out
}

// TestPublishIDPerChannel: an id is stored once per channel: a retry is
// the same message, the same id on another channel of the rule another.
func TestPublishIDPerChannel(t *testing.T) {
	s, _ := startStore(t, session.Rule{Pattern: session.MustPattern("h.>"), History: 10, HistoryTTL: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := s.Publish(ctx, "h.a", []byte(`1`), "ev-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Publish(ctx, "h.a", []byte(`1`), "ev-1")
	if err != nil || again != a {
		t.Fatalf("retry: seq %d (%v), want %d", again, err, a)
	}
	b, err := s.Publish(ctx, "h.b", []byte(`1`), "ev-1")
	if err != nil || b == a {
		t.Fatalf("the same id on another channel: seq %d (%v), first %d", b, err, a)
	}
	if got, _ := s.Since(ctx, "h.b", 1, 0, 0); len(got) != 1 {
		t.Fatalf("h.b holds %d messages, want 1", len(got))
	}
}

// TestRetryLost: a call whose answer is lost (it runs into its own bound)
// is made again while the whole bound lasts, so one lost answer costs one
// attempt, not the whole wait (StepDown lost 3 s of a handover so in CI);
// any other error, and the end of ctx, end it at once.
func TestRetryLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	v, err := retryLost(ctx, 50*time.Millisecond, func(actx context.Context) (int, error) {
		calls++
		if calls == 1 {
			<-actx.Done() // the answer is lost
			return 0, fmt.Errorf("stream info: %w", actx.Err())
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 2 {
		t.Fatalf("got %d, %v after %d calls, want 7 after 2", v, err, calls)
	}
	if ctx.Err() != nil {
		t.Fatal("the lost answer used up the whole wait")
	}

	calls = 0
	refused := errors.New("stream not found")
	if _, err := retryLost(ctx, 50*time.Millisecond, func(context.Context) (int, error) {
		calls++
		return 0, refused
	}); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("an answer that is an error: %v after %d calls, want it after 1", err, calls)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if _, err := retryLost(short, 50*time.Millisecond, func(actx context.Context) (int, error) {
		<-actx.Done()
		return 0, actx.Err()
	}); !errors.Is(err, context.DeadlineExceeded) || short.Err() == nil {
		t.Fatalf("every answer lost: %v before the bound ended", err)
	}
}

// startCluster starts three NATS servers with JetStream, clustered, and a
// store of rules on the first, its streams created with three replicas.
func startCluster(t *testing.T, rules ...session.Rule) *Store {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var first *server.Server
	for i, p := range ports {
		srv, err := server.NewServer(&server.Options{ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			Cluster: server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: p}, Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
		if !srv.ReadyForConnections(5 * time.Second) {
			t.Fatal("server not ready")
		}
		if first == nil {
			first = srv
		}
	}
	s, _ := openStore(t, first.ClientURL(), rules)
	// Until the cluster has elected its meta leader.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := s.Ensure(ctx, 3)
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams: %v", err)
		}
	}
}

// streamLeader is the server that leads the stream of rule r, "" when
// none does or none answers.
func streamLeader(s *Store, r *session.Rule) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.StreamName(r))
	if err != nil || st.CachedInfo().Cluster == nil {
		return ""
	}
	return st.CachedInfo().Cluster.Leader
}

// TestStepDownLostRequest: a step-down request lost on the way costs one
// bounded attempt, not the whole wait (a handover's 3 s): the stream's
// info is read again and the step-down asked again of a server that
// still leads.
func TestStepDownLostRequest(t *testing.T) {
	s := startCluster(t, session.Rule{Pattern: session.MustPattern("h.>"), History: 10, HistoryTTL: time.Hour})
	r := &s.rules[0]
	var leader string
	for deadline := time.Now().Add(20 * time.Second); leader == ""; time.Sleep(100 * time.Millisecond) {
		if leader = streamLeader(s, r); leader == "" && time.Now().After(deadline) {
			t.Fatal("the stream has no leader")
		}
	}
	var calls atomic.Int32
	s.stepDownRequest = func(ctx context.Context, stream string) error {
		if calls.Add(1) == 1 {
			<-ctx.Done() // lost
			return ctx.Err()
		}
		return s.askStepDown(ctx, stream)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.StepDown(ctx, leader); err != nil {
		t.Fatalf("StepDown: %v (after %d requests)", err, calls.Load())
	}
	if calls.Load() != 2 {
		t.Fatalf("%d step-down requests, want the lost one and another", calls.Load())
	}
	if now := streamLeader(s, r); now == leader {
		t.Fatalf("%s still leads", leader)
	}
}

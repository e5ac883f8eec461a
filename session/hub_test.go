package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTransport records what the hub writes, frame by frame. full makes
// it behave like a socket nobody reads: TryWrite takes nothing and Write
// blocks until release is closed.
type fakeTransport struct {
	mu      sync.Mutex
	buf     []byte
	closed  *Disconnect
	full    bool
	room    int // while full: bytes TryWrite still takes
	release chan struct{}
	writes  int // TryWrite and Write calls that wrote something
}

func (t *fakeTransport) TryWrite(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.full {
		n := min(t.room, len(p))
		t.room -= n
		t.buf = append(t.buf, p[:n]...)
		if n > 0 {
			t.writes++
		}
		return n, nil
	}
	t.buf = append(t.buf, p...)
	t.writes++
	return len(p), nil
}

func (t *fakeTransport) Write(bufs [][]byte) error {
	if t.release != nil {
		<-t.release
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range bufs {
		t.buf = append(t.buf, b...)
	}
	t.writes++
	return nil
}

func (t *fakeTransport) Close(d Disconnect) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = &d
	return nil
}

// partialFrame returns how many bytes at the end of what was written do
// not make a whole frame (0: the stream ends on a frame's end).
func (t *fakeTransport) partialFrame() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	for len(b) >= 2 {
		n, h := int(b[1]&0x7f), 2
		switch {
		case n == 126 && len(b) >= 4:
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case n == 127 && len(b) >= 10:
			n, h = int(binary.BigEndian.Uint64(b[2:])), 10
		case n >= 126:
			return len(b)
		}
		if h+n > len(b) {
			return len(b)
		}
		b = b[h+n:]
	}
	return len(b)
}

// frames decodes the server-to-client WebSocket frames written so far.
func (t *fakeTransport) frames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	b := t.buf
	for len(b) >= 2 {
		n, h := int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			n, h = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		if b[0]&0x0f == opText {
			out = append(out, string(b[h:h+n]))
		}
		b = b[h+n:]
	}
	return out
}

func (t *fakeTransport) closedWith() *Disconnect {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// loopBus is a one-node Bus: a publish is delivered at once.
type loopBus struct {
	hub  *Hub
	mu   sync.Mutex
	subs map[string]int
}

func (b *loopBus) Subscribe(ch string) error {
	b.mu.Lock()
	b.subs[ch]++
	b.mu.Unlock()
	return nil
}
func (b *loopBus) Unsubscribe(ch string) {
	b.mu.Lock()
	b.subs[ch]--
	b.mu.Unlock()
}
func (b *loopBus) Publish(ch string, p []byte) error { b.hub.DeliverChannel(ch, p); return nil }

// fakeBackend records events; send answers custom frames.
type fakeBackend struct {
	mu     sync.Mutex
	events []string
	send   func(ctx context.Context, typ string, payload []byte, wantReply bool) ([]byte, error)
}

func (b *fakeBackend) Listening(string) bool { return true }

func (b *fakeBackend) PublishEvent(name string, _ []byte) error {
	b.mu.Lock()
	b.events = append(b.events, name)
	b.mu.Unlock()
	return nil
}
func (b *fakeBackend) Send(ctx context.Context, typ, user, conn string, payload []byte, wantReply bool) ([]byte, error) {
	return b.send(ctx, typ, payload, wantReply)
}

func newTestHub(t testing.TB, cfg Config) (*Hub, *loopBus, *fakeBackend) {
	t.Helper()
	bus := &loopBus{subs: map[string]int{}}
	be := &fakeBackend{send: func(context.Context, string, []byte, bool) ([]byte, error) { return nil, ErrNoHandler }}
	cfg.Node = "n1"
	h, err := New(cfg, bus, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.hub = h
	return h, bus, be
}

// waitFrame polls until t has written a frame that contains match.
func waitFrame(tb testing.TB, t *fakeTransport, match string) {
	tb.Helper()
	checkFor(tb, 2*time.Second, func() error {
		for _, f := range t.frames() {
			if strings.Contains(f, match) {
				return nil
			}
		}
		return fmt.Errorf("no frame contains %s; got %q", match, t.frames())
	})
}

// waitCount polls until exactly n frames of t contain match.
func waitCount(tb testing.TB, t *fakeTransport, match string, n int) {
	tb.Helper()
	checkFor(tb, 2*time.Second, func() error {
		if got := strings.Count(strings.Join(t.frames(), "\n"), match); got != n {
			return fmt.Errorf("%d frames contain %s, want %d", got, match, n)
		}
		return nil
	})
}

// waitClosed polls until t is closed, and checks it was with code.
func waitClosed(tb testing.TB, t *fakeTransport, code CloseCode) {
	tb.Helper()
	checkFor(tb, 2*time.Second, func() error {
		if d := t.closedWith(); d == nil || d.Code != code {
			return fmt.Errorf("closed with %v, want %d", d, code)
		}
		return nil
	})
}

func TestJoinChatLeave(t *testing.T) {
	h, bus, be := newTestHub(t, Config{})
	ta, tb := &fakeTransport{}, &fakeTransport{}
	a, _ := h.Connect(ta, Identity{User: "alice"}, netip.MustParseAddr("127.0.0.1"))
	b, _ := h.Connect(tb, Identity{}, netip.MustParseAddr("127.0.0.2"))
	waitFrame(t, ta, `{"type":"welcome","conn":"`+a.ID()+`","node":"n1","user":"alice"}`)
	waitFrame(t, tb, `"user":"anon-`+b.ID()+`"`)

	h.Receive(a, []byte(`{"type":"join","channel":"lobby","id":1}`))
	waitFrame(t, ta, `{"type":"joined","channel":"lobby","id":1}`)
	waitFrame(t, ta, `{"type":"control","channel":"lobby","user":"alice","msg":"joined"}`)
	// joined comes before the control frame.
	fs := ta.frames()
	if !strings.Contains(fs[1], `"joined"`) || !strings.Contains(fs[2], `"control"`) {
		t.Fatalf("order: %q", fs)
	}
	// Joining twice answers joined again, with no second control frame.
	h.Receive(a, []byte(`{"type":"join","channel":"lobby"}`))
	waitFrame(t, ta, `{"type":"joined","channel":"lobby"}`)

	// b chats without joining: it joins first, under the user its join names.
	h.Receive(b, []byte(`{"type":"join","channel":"x","user":"bob"}`))
	h.Receive(b, []byte(`{"type":"chat","channel":"lobby","msg":{"text":"hi"}}`))
	waitFrame(t, ta, `{"type":"chat","channel":"lobby","user":"bob","msg":{"text":"hi"}}`)
	waitFrame(t, tb, `{"type":"chat","channel":"lobby","user":"bob","msg":{"text":"hi"}}`)
	waitFrame(t, ta, `{"type":"control","channel":"lobby","user":"bob","msg":"joined"}`)
	if n := strings.Count(strings.Join(ta.frames(), "\n"), `"user":"alice","msg":"joined"`); n != 1 {
		t.Fatalf("alice's join control frame seen %d times", n)
	}

	h.Receive(b, []byte(`{"type":"leave","channel":"lobby","id":"z"}`))
	waitFrame(t, tb, `{"type":"left","channel":"lobby","id":"z"}`)
	waitFrame(t, ta, `{"type":"control","channel":"lobby","user":"bob","msg":"left"}`)

	// A disconnect leaves every channel and tells the others.
	h.Receive(b, []byte(`{"type":"join","channel":"lobby"}`))
	h.disconnect(b, nil)
	waitCount(t, ta, `"user":"bob","msg":"left"`, 2)
	if bus.subs["lobby"] != 1 || bus.subs["x"] != 0 {
		t.Fatalf("bus interest %v", bus.subs)
	}
	h.disconnect(a, nil)
	if st := h.Stats(); st.Connections != 0 || st.Channels != 0 {
		t.Fatalf("stats after all left: %+v", st)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	got := strings.Join(be.events, " ")
	for _, want := range []string{"connect", "join.lobby", "join.x", "leave.lobby", "leave.x", "disconnect"} {
		if !strings.Contains(got, want) {
			t.Errorf("events %q lack %s", got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	h, _, be := newTestHub(t, Config{MaxChannels: 2})
	be.send = func(ctx context.Context, typ string, _ []byte, wantReply bool) ([]byte, error) {
		switch typ {
		case "echo":
			return []byte(`{"ok":1}`), nil
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, ErrNoHandler
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "carol"}, netip.Addr{})
	cases := []struct{ in, want string }{
		{`garbage`, `{"type":"error","code":"bad_request"`},
		{`{"type":"join","channel":"a b","id":1}`, `"code":"bad_channel","msg":"invalid channel name \"a b\"","id":1}`},
		{`{"type":"chat","channel":"*","id":2}`, `"code":"bad_channel"`},
		{`{"type":"leave","channel":"","id":3}`, `"code":"bad_channel"`},
		{`{"type":"join","channel":"@dave","id":4}`, `"code":"forbidden"`},
		{`{"type":"join","channel":"@carol.inbox","id":5}`, `{"type":"joined","channel":"@carol.inbox","id":5}`},
		{`{"type":"join","channel":"one","id":6}`, `{"type":"joined","channel":"one","id":6}`},
		{`{"type":"join","channel":"two","id":7}`, `"code":"too_many_channels"`},
		{`{"type":"join","channel":"one","user":"eve","id":8}`, `"code":"bad_request","msg":"this connection is already user \"carol\"","id":8}`},
		{`{"type":"a.b","id":9}`, `"code":"bad_request","msg":"invalid type \"a.b\""`},
		{`{"type":"nobody","id":10}`, `{"type":"error","code":"no_handler","msg":"no backend handles \"nobody\"","id":10}`},
		{`{"type":"echo","id":"e"}`, `{"type":"reply","id":"e","msg":{"ok":1}}`},
		{`{"type":"ping"}`, `{"type":"pong"}`},
		{`{"type":"ping","id":"p1"}`, `{"type":"pong","id":"p1"}`},
	}
	for _, c2 := range cases {
		h.Receive(c, []byte(c2.in))
		waitFrame(t, tr, c2.want)
	}
	if tr.closedWith() != nil {
		t.Fatal("an error closed the connection")
	}
	if st := h.Stats(); st.Errors[CodeBadChannel] != 3 || st.Errors[CodeNoHandler] != 1 {
		t.Fatalf("error counters %v", st.Errors)
	}
}

func TestRequestTimeout(t *testing.T) {
	h, _, be := newTestHub(t, Config{RequestTimeout: 20 * time.Millisecond})
	be.send = func(ctx context.Context, _ string, _ []byte, _ bool) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"slow","id":1}`))
	waitFrame(t, tr, `{"type":"error","code":"timeout"`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.wait(ctx); err == nil {
		t.Fatal("Wait returned with a connection open")
	}
}

func TestRateLimit(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 1, Burst: 5})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	for i := 0; i < 5; i++ {
		h.Receive(c, []byte(`{"type":"ping"}`))
	}
	for i := 0; i < 9; i++ {
		h.Receive(c, []byte(fmt.Sprintf(`{"type":"ping","id":%d}`, i)))
	}
	waitFrame(t, tr, `{"type":"error","code":"rate_limited","msg":"more than 1 frames per second; frame dropped","id":8}`)
	if tr.closedWith() != nil {
		t.Fatal("closed after nine strikes")
	}
	h.Receive(c, []byte(`{"type":"ping"}`))
	waitClosed(t, tr, ClosePolicy)
}

func TestSlowConsumer(t *testing.T) {
	h, _, _ := newTestHub(t, Config{QueueFrames: 50})
	fast, slow := &fakeTransport{}, &fakeTransport{release: make(chan struct{})}
	a, _ := h.Connect(fast, Identity{}, netip.Addr{})
	b, _ := h.Connect(slow, Identity{}, netip.Addr{})
	h.Receive(a, []byte(`{"type":"join","channel":"c"}`))
	h.Receive(b, []byte(`{"type":"join","channel":"c"}`))
	waitFrame(t, slow, `"joined"`)
	slow.mu.Lock()
	slow.full = true
	slow.mu.Unlock()
	for i := 0; i < 500; i++ {
		h.DeliverChannel("c", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	waitFrame(t, fast, `{"n":499}`)
	close(slow.release)
	waitClosed(t, slow, CloseSlowConsumer)
	if fast.closedWith() != nil {
		t.Fatal("the fast member was closed")
	}
	if h.Stats().SlowConsumers != 1 {
		t.Fatal("slow consumer not counted")
	}
}

// TestSlowConsumerAfterPartialWrite: a member whose socket took part of a
// frame is still held to its queue bound, and its discarded backlog keeps
// only the rest of that frame, so the close frame follows a whole frame.
// What the writer had taken off the queue before the cut is on its way to
// the socket and is written too (a CI run saw frames 2 and 3 go that way),
// so the test asks for whole frames, in order, no more than the bound
// past the cut frame, not for the cut frame to be the last.
func TestSlowConsumerAfterPartialWrite(t *testing.T) {
	const bound = 10
	h, _, _ := newTestHub(t, Config{QueueFrames: bound})
	slow := &fakeTransport{release: make(chan struct{})}
	b, _ := h.Connect(slow, Identity{}, netip.Addr{})
	h.Receive(b, []byte(`{"type":"join","channel":"c"}`))
	waitFrame(t, slow, `"type":"control"`)
	ch := b.channel("c")
	// The dispatcher takes the first message, then waits while the
	// other 29 gather.
	ch.mu.Lock()
	for i := 0; i < 30; i++ {
		h.DeliverChannel("c", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	slow.mu.Lock()
	// The first frame fits, and 3 bytes of the second: a frame is cut.
	slow.full, slow.room = true, len(textFrame([]byte(`{"n":0}`)))+3
	slow.mu.Unlock()
	ch.mu.Unlock()
	checkFor(t, 2*time.Second, func() error {
		if !b.out.isClosed() {
			return fmt.Errorf("the slow member is not cut")
		}
		return nil
	})
	close(slow.release)
	waitClosed(t, slow, CloseSlowConsumer)
	if rest := slow.partialFrame(); rest != 0 {
		t.Fatalf("the stream ends %d bytes into a frame", rest)
	}
	var got []string
	for _, f := range slow.frames() {
		if strings.HasPrefix(f, `{"n":`) {
			got = append(got, f)
		}
	}
	if len(got) < 2 || len(got) > 2+bound {
		t.Fatalf("frames %q: want the cut frame completed and at most %d after it", got, bound)
	}
	for i, f := range got {
		if want := fmt.Sprintf(`{"n":%d}`, i); f != want {
			t.Fatalf("frame %d is %q, want %q (all: %q)", i, f, want, got)
		}
	}
}

// message is a client frame for Enqueue.
type message []byte

func (m message) Bytes() []byte { return m }
func (m message) Close() error  { return nil }

// TestBinaryClosesInOrder: the close for a binary frame comes after the
// answers to the frames the client sent before it.
func TestBinaryClosesInOrder(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	h.Enqueue(c, message(`{"type":"join","channel":"c","id":1}`))
	h.Binary(c)
	waitClosed(t, tr, CloseUnsupported)
	waitFrame(t, tr, `"joined"`)
}

// TestNotHeardAfterClose: once the server has closed a connection, the
// frames it still sends are not handled.
func TestNotHeardAfterClose(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	ta, tb := &fakeTransport{}, &fakeTransport{}
	a, _ := h.Connect(ta, Identity{}, netip.Addr{})
	b, _ := h.Connect(tb, Identity{}, netip.Addr{})
	h.Receive(a, []byte(`{"type":"join","channel":"c"}`))
	h.Receive(b, []byte(`{"type":"join","channel":"c"}`))
	waitFrame(t, tb, `"joined"`)
	a.Close(DisconnectRateLimit)
	h.Receive(a, []byte(`{"type":"chat","channel":"c","msg":"late"}`))
	h.Receive(b, []byte(`{"type":"chat","channel":"c","msg":"on time"}`))
	waitFrame(t, tb, `"on time"`)
	for _, f := range tb.frames() {
		if strings.Contains(f, `"late"`) {
			t.Fatal("a chat sent after the server closed its connection was published")
		}
	}
}

func TestDeliverTargets(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	t1, t2 := &fakeTransport{}, &fakeTransport{}
	c1, _ := h.Connect(t1, Identity{User: "ann"}, netip.Addr{})
	_, _ = h.Connect(t2, Identity{User: "ann"}, netip.Addr{})
	h.DeliverUser("ann", []byte(`{"u":1}`))
	h.DeliverConn(c1.ID(), []byte(`{"c":1}`))
	h.DeliverAll([]byte(`{"all":1}`))
	for _, tr := range []*fakeTransport{t1, t2} {
		waitFrame(t, tr, `{"u":1}`)
		waitFrame(t, tr, `{"all":1}`)
	}
	waitFrame(t, t1, `{"c":1}`)
	for _, f := range t2.frames() {
		if f == `{"c":1}` {
			t.Fatal("conn message reached the other connection")
		}
	}
	// Anonymous users are reached by their anon-<conn> name, until they
	// name themselves.
	t3 := &fakeTransport{}
	anon, _ := h.Connect(t3, Identity{}, netip.Addr{})
	h.DeliverUser(anon.User(), []byte(`{"anon":1}`))
	waitFrame(t, t3, `{"anon":1}`)
	old := anon.User()
	h.Receive(anon, []byte(`{"type":"join","channel":"x","user":"zed"}`))
	h.DeliverUser(old, []byte(`{"anon":2}`))
	h.DeliverUser("zed", []byte(`{"named":1}`))
	waitFrame(t, t3, `{"named":1}`)
	for _, f := range t3.frames() {
		if f == `{"anon":2}` {
			t.Fatal("a named connection still got its anonymous name's messages")
		}
	}
	var v map[string]any
	for _, f := range t1.frames() {
		if err := json.Unmarshal([]byte(f), &v); err != nil {
			t.Fatalf("frame %q: %v", f, err)
		}
	}
}

// TestRateBucketShared: the rate bucket belongs to the user on the node,
// or to the client IP while anonymous, and reconnecting does not refill
// it.
func TestRateBucketShared(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	cases := []struct {
		name         string
		user1, user2 string
		ip1, ip2     netip.Addr
		shared       bool
	}{
		{"same user, two IPs", "mallory", "mallory", ip1, ip2, true},
		{"anonymous, one IP", "", "", ip1, ip1, true},
		{"anonymous, two IPs", "", "", ip1, ip2, false},
		{"two users, one IP", "ann", "bob", ip1, ip1, false},
		{"anonymous, IP unknown", "", "", netip.Addr{}, netip.Addr{}, false},
		{"anonymous, one IPv6 /64", "", "", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:1"), true},
		{"anonymous, two IPv6 /64s", "", "", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:0:1::1"), false},
		{"anonymous, IPv4 and its mapped form", "", "", ip1, netip.MustParseAddr("::ffff:192.0.2.1"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _, _ := newTestHub(t, Config{Rate: 0.01, Burst: 3})
			t1, t2 := &fakeTransport{}, &fakeTransport{}
			a, _ := h.Connect(t1, Identity{User: c.user1}, c.ip1)
			for i := 0; i < 3; i++ {
				h.Receive(a, []byte(`{"type":"ping"}`))
			}
			// Reconnect: the new connection gets what is left, nothing.
			h.disconnect(a, nil)
			b, _ := h.Connect(t2, Identity{User: c.user2}, c.ip2)
			h.Receive(b, []byte(`{"type":"ping","id":1}`))
			limited := strings.Contains(strings.Join(t2.frames(), ""), `"code":"rate_limited"`)
			if limited != c.shared {
				t.Fatalf("second connection rate limited: %v, want %v; frames %q", limited, c.shared, t2.frames())
			}
		})
	}
}

// TestRateBucketClaimedUser: an anonymous connection that names itself in
// a join counts against its user's bucket from then on.
func TestRateBucketClaimedUser(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 0.01, Burst: 3})
	ip := netip.MustParseAddr("192.0.2.9")
	t1, t2 := &fakeTransport{}, &fakeTransport{}
	a, _ := h.Connect(t1, Identity{User: "mallory"}, netip.MustParseAddr("192.0.2.1"))
	for i := 0; i < 3; i++ {
		h.Receive(a, []byte(`{"type":"ping"}`))
	}
	b, _ := h.Connect(t2, Identity{}, ip)
	h.Receive(b, []byte(`{"type":"join","channel":"x","user":"mallory"}`))
	waitFrame(t, t2, `"joined"`)
	h.Receive(b, []byte(`{"type":"ping","id":2}`))
	waitFrame(t, t2, `"code":"rate_limited","msg":"more than 0.01 frames per second; frame dropped","id":2}`)
}

// TestRateBucketsForgotten: a bucket nobody uses is dropped once it has
// refilled, so the hub keeps buckets only for users and IPs seen lately.
func TestRateBucketsForgotten(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 1000, Burst: 5}) // refills in 5ms
	for i := 0; i < 100; i++ {
		c, _ := h.Connect(&fakeTransport{}, Identity{User: fmt.Sprintf("u%d", i)}, netip.Addr{})
		h.Receive(c, []byte(`{"type":"ping"}`))
		h.disconnect(c, nil)
	}
	if n := h.limits.size(); n == 0 || n > 100 {
		t.Fatalf("%d buckets right after 100 users left", n)
	}
	checkFor(t, 2*time.Second, func() error {
		// Sweeping happens as connections come and go.
		c, _ := h.Connect(&fakeTransport{}, Identity{User: "last"}, netip.Addr{})
		h.disconnect(c, nil)
		if n := h.limits.size(); n > 1 {
			return fmt.Errorf("%d buckets kept", n)
		}
		return nil
	})
}

// TestPingsCount: WebSocket pings take tokens like frames: past the
// rate they get no pong, and a flood of them is closed with 1008.
func TestPingsCount(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 0.01, Burst: 2})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	for i := 0; i < 2+rateStrikes; i++ {
		h.Ping(c, []byte("p"))
	}
	waitClosed(t, tr, ClosePolicy)
	if n := strings.Count(string(tr.buf), "\x8a\x01p"); n != 2 {
		t.Fatalf("%d pongs, want 2", n)
	}
}

// TestMaxRequests: a connection may have MaxRequests frames waiting for a
// backend's reply; more are refused, and all are cancelled when it
// disconnects, so nothing outlives it.
func TestMaxRequests(t *testing.T) {
	h, _, be := newTestHub(t, Config{MaxRequests: 3, RequestTimeout: time.Minute})
	var mu sync.Mutex
	started, cancelled := 0, 0
	be.send = func(ctx context.Context, _ string, _ []byte, wantReply bool) ([]byte, error) {
		mu.Lock()
		started++
		mu.Unlock()
		if !wantReply {
			return nil, nil
		}
		<-ctx.Done()
		mu.Lock()
		cancelled++
		mu.Unlock()
		return nil, ctx.Err()
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	for i := 0; i < 5; i++ {
		h.Receive(c, []byte(fmt.Sprintf(`{"type":"audit","id":%d}`, i)))
	}
	waitFrame(t, tr, `{"type":"error","code":"too_many_requests","msg":"at most 3 requests may wait for a reply","id":3}`)
	waitFrame(t, tr, `"code":"too_many_requests","msg":"at most 3 requests may wait for a reply","id":4}`)
	// A frame without an id is not a request: it is published at once.
	h.Receive(c, []byte(`{"type":"audit"}`))
	h.disconnect(c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.wait(ctx); err != nil {
		t.Fatalf("requests outlived their connection: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if started != 4 || cancelled != 3 { // 3 requests and 1 publish; the requests cancelled
		t.Fatalf("backend saw %d sends, %d cancelled", started, cancelled)
	}
	if strings.Contains(strings.Join(tr.frames(), ""), `"code":"timeout"`) {
		t.Fatal("a cancelled request was answered")
	}
}

// TestAnonNamesReserved: anon- names belong to the server's anonymous
// connections; a client cannot claim one, so it cannot receive another
// connection's user messages.
func TestAnonNamesReserved(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	victim, _ := h.Connect(&fakeTransport{}, Identity{}, netip.Addr{})
	if _, err := h.Connect(&fakeTransport{}, Identity{User: victim.User()}, netip.Addr{}); err == nil {
		t.Fatalf("connected as %s", victim.User())
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"x","user":"`+victim.User()+`","id":1}`))
	waitFrame(t, tr, `"code":"bad_request","msg":"user names starting with \"anon-\" are the server's","id":1}`)
	h.DeliverUser(victim.User(), []byte(`{"secret":1}`))
	for _, f := range tr.frames() {
		if strings.Contains(f, "secret") {
			t.Fatal("a claimed anon- name received the victim's message")
		}
	}
}

func checkFor(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// badRule is DefaultRule changed by spoil.
func badRule(spoil func(*Rule)) Rule {
	r := DefaultRule()
	spoil(&r)
	return r
}

func TestConfigRanges(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Rate: math.NaN()}, "session.rate"},
		{Config{Rate: math.Inf(1)}, "session.rate"},
		{Config{Rate: -1}, "session.rate"},
		{Config{MaxMessageBytes: 2 << 20}, "session.max_message_bytes"},
		{Config{MaxMessageBytes: 10}, "session.max_message_bytes"},
		{Config{RequestTimeout: time.Nanosecond}, "session.request_timeout"},
		{Config{RequestTimeout: 24 * time.Hour}, "session.request_timeout"},
		{Config{MaxRequests: -1}, "session.max_requests"},
		{Config{Burst: -5}, "session.burst"},
		{Config{QueueBytes: 100}, "session.queue_bytes"},
		{Config{Rules: []Rule{badRule(func(r *Rule) { r.Join = "everyone" })}}, "channels[0].join"},
		{Config{Rules: []Rule{DefaultRule(), badRule(func(r *Rule) { r.Chat = "all" })}}, "channels[1].chat"},
		{Config{Rules: []Rule{badRule(func(r *Rule) { r.AnnounceLimit = -1 })}}, "channels[0].announce_limit"},
		{Config{Rules: []Rule{badRule(func(r *Rule) { r.History = -1 })}}, "channels[0].history"},
		{Config{Rules: []Rule{badRule(func(r *Rule) { r.HistoryTTL = 0 })}}, "channels[0].history_ttl"},
		{Config{Rules: []Rule{badRule(func(r *Rule) { r.Pattern = Pattern{} })}}, "channels[0].pattern"},
		{Config{PrivatePrefix: "a.b"}, "session.private_prefix"},
		{Config{MaxChannels: -1}, "session.max_channels"},
	}
	for _, c := range cases {
		cfg := c.cfg
		cfg.setDefaults()
		err := cfg.Check()
		if err == nil || !strings.HasPrefix(err.Error(), c.want+":") {
			t.Errorf("%+v: %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	var ok Config
	ok.setDefaults()
	if err := ok.Check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestChannelMembership: members are found and removed alike below and
// above the size at which a channel starts keeping an index.
func TestChannelMembership(t *testing.T) {
	ch := newChannel("c", &defaultRule)
	conns := make([]*Conn, 3*indexAt)
	for i := range conns {
		conns[i] = &Conn{id: fmt.Sprint(i)}
		if !ch.add(conns[i], false) {
			t.Fatal("add refused")
		}
		if !ch.add(conns[i], false) { // twice: still one member
			t.Fatal("add refused")
		}
	}
	if len(ch.members) != len(conns) {
		t.Fatalf("%d members after adding %d twice each", len(ch.members), len(conns))
	}
	// Remove every other member, then the rest, checking each time that
	// exactly the remaining ones are found where members says.
	check := func(want map[*Conn]bool) {
		t.Helper()
		if len(ch.members) != len(want) {
			t.Fatalf("%d members, want %d", len(ch.members), len(want))
		}
		for c := range want {
			if i := ch.find(c); i < 0 || ch.members[i] != c {
				t.Fatalf("member %s not found", c.id)
			}
		}
	}
	left := map[*Conn]bool{}
	for _, c := range conns {
		left[c] = true
	}
	for i := 0; i < len(conns); i += 2 {
		ch.remove(conns[i])
		delete(left, conns[i])
		check(left)
	}
	for i := 1; i < len(conns); i += 2 {
		empty := ch.remove(conns[i])
		delete(left, conns[i])
		check(left)
		if empty != (len(left) == 0) {
			t.Fatalf("remove reported empty=%v with %d left", empty, len(left))
		}
	}
	if ch.add(conns[0], false) {
		t.Fatal("a dead channel took a member")
	}
}

// TestChannelBacklogDrops: DeliverChannel never waits, even for a channel
// whose dispatcher cannot keep up (here: held still); past the backlog
// bound that channel's messages are dropped and counted, and it goes on
// once the dispatcher does.
func TestChannelBacklogDrops(t *testing.T) {
	h, _, _ := newTestHub(t, Config{MaxMessageBytes: MaxMessageBytesLimit})
	tr := &watchTransport{needle: []byte(`{"after":1}`)}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"busy"}`))
	h.mu.RLock()
	ch := h.channels["busy"]
	h.mu.RUnlock()
	ch.mu.Lock() // the dispatcher waits for it
	payload := []byte(`{"pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Twice the bound: however many batches the dispatcher took before
		// it stopped at the lock, the rest passes the bound.
		for i := 0; i < 2*maxChannelBacklog>>20; i++ {
			h.DeliverChannel("busy", payload)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("DeliverChannel waited for a stuck channel")
	}
	ch.mu.Unlock()
	if d, total := h.Stats().Dropped, uint64(2*maxChannelBacklog>>20); d == 0 || d > total-maxChannelBacklog>>20+1 {
		t.Fatalf("%d of %d messages dropped, want those over the bound", d, total)
	}
	h.DeliverChannel("busy", []byte(`{"after":1}`))
	checkFor(t, 30*time.Second, func() error {
		if !tr.seen.Load() {
			return fmt.Errorf("the channel delivers nothing after the drops")
		}
		return nil
	})
}

// watchTransport takes everything and remembers whether needle went by.
type watchTransport struct {
	needle []byte
	seen   atomic.Bool
}

func (w *watchTransport) TryWrite(p []byte) (int, error) {
	if bytes.Contains(p, w.needle) {
		w.seen.Store(true)
	}
	return len(p), nil
}

func (w *watchTransport) Write(bufs [][]byte) error {
	for _, p := range bufs {
		_, _ = w.TryWrite(p)
	}
	return nil
}

func (w *watchTransport) Close(Disconnect) error { return nil }

// TestDrainingConnectKeepsNoBucket: a connection refused while the node
// drains leaves no rate bucket behind.
func TestDrainingConnectKeepsNoBucket(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 1000, Burst: 1}) // refills in 1ms
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := h.Connect(&fakeTransport{}, Identity{User: fmt.Sprintf("late%d", i)}, netip.Addr{}); !errors.Is(err, ErrDraining) {
			t.Fatalf("connect while draining: %v", err)
		}
	}
	checkFor(t, 2*time.Second, func() error {
		h.limits.mu.Lock()
		h.limits.sweepLocked(h.now())
		h.limits.mu.Unlock()
		if n := h.limits.size(); n != 0 {
			return fmt.Errorf("%d buckets kept", n)
		}
		return nil
	})
}

// TestRateBucketIdleListBounded: a client that reconnects over and over
// while over its rate keeps one idle entry, not one per reconnect.
func TestRateBucketIdleListBounded(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 0.01, Burst: 1})
	ip := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 1000; i++ {
		c, _ := h.Connect(&fakeTransport{}, Identity{}, ip)
		h.Receive(c, []byte(`{"type":"ping"}`))
		h.disconnect(c, nil)
	}
	h.limits.mu.Lock()
	defer h.limits.mu.Unlock()
	if n := len(h.limits.idle); n > 1 {
		t.Fatalf("%d idle entries for one bucket", n)
	}
}

// TestClientPongsCount: a client's WebSocket pongs take tokens like any
// frame, and a flood of them is closed with 1008.
func TestClientPongsCount(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Rate: 0.01, Burst: 2})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	for i := 0; i < 2+rateStrikes; i++ {
		h.Pong(c)
	}
	waitClosed(t, tr, ClosePolicy)
}

// TestShutdown: a hub in Shutdown refuses new connections, serves the
// connected ones until the drain ends, then closes them with 1001 and
// returns once they are gone; a second Shutdown returns the first's
// result.
func TestShutdown(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{}, netip.Addr{})
	// The transport's close is the socket's: the read loop then ends.
	go func() {
		checkFor(t, 10*time.Second, func() error {
			if tr.closedWith() == nil {
				return fmt.Errorf("not closed")
			}
			return nil
		})
		h.ReadEnded(c, nil)
	}()
	// Long enough for the checks below on a loaded machine: the drain
	// ends in closing the connection they use.
	drain, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(drain) }()
	checkFor(t, 2*time.Second, func() error {
		early, err := h.Connect(&fakeTransport{}, Identity{}, netip.Addr{})
		if err == nil {
			h.ReadEnded(early, nil) // Shutdown had not begun yet: let it go
			return fmt.Errorf("a connection was let in")
		}
		if !errors.Is(err, ErrDraining) {
			return err
		}
		return nil
	})
	// Served while draining.
	h.DeliverConn(c.ID(), []byte(`{"during":1}`))
	waitFrame(t, tr, `{"during":1}`)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if d := tr.closedWith(); d == nil || d.Code != CloseGoingAway {
		t.Fatalf("closed with %v, want 1001", d)
	}
	if st := h.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections after Shutdown", st.Connections)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// TestRestart: Restart closes every connection with 1012 "service
// restart", spread over the period it is given (not all at once, and all
// of them by its end); a connection made meanwhile is closed with 1012
// too; it returns once they are all gone, and so does a later Shutdown.
func TestRestart(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	const count = 20
	trs := make([]*fakeTransport, count)
	for i := range trs {
		trs[i] = &fakeTransport{}
		c, err := h.Connect(trs[i], Identity{}, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		// The transport's close is the socket's: the read loop then ends.
		go func() {
			for trs[i].closedWith() == nil {
				time.Sleep(time.Millisecond)
			}
			h.ReadEnded(c, nil)
		}()
	}
	// Long enough that a loaded machine sees the closes spread out.
	const spread = 2 * time.Second
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- h.Restart(context.Background(), spread) }()

	// Once the first is closed, most are not yet.
	closed := 0
	checkFor(t, spread, func() error {
		closed = 0
		for _, tr := range trs {
			if tr.closedWith() != nil {
				closed++
			}
		}
		if closed == 0 {
			return fmt.Errorf("none closed")
		}
		return nil
	})
	if closed > count/2 {
		t.Errorf("%d of %d closed at once; want them spread out", closed, count)
	}
	connectSentBack(t, h, "during Restart")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restart did not return")
	}
	if took := time.Since(began); took < spread*3/4 {
		t.Errorf("Restart returned after %v; its closes were to take about %v", took, spread)
	}
	for i, tr := range trs {
		if d := tr.closedWith(); d == nil || *d != DisconnectRestart {
			t.Errorf("connection %d closed with %v, want %v", i, d, DisconnectRestart)
		}
	}
	if st := h.Stats(); st.Connections != 0 {
		t.Fatalf("%d connections after Restart", st.Connections)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Restart: %v", err)
	}
}

// connectSentBack connects to h, which is restarting (when says how), and
// checks that the connection is refused for new work (ErrDraining) and
// closed with 1012; it returns its transport.
func connectSentBack(t *testing.T, h *Hub, when string) *fakeTransport {
	t.Helper()
	late := &fakeTransport{}
	if _, err := h.Connect(late, Identity{}, netip.Addr{}); !errors.Is(err, ErrDraining) {
		t.Fatalf("Connect %s: %v, want ErrDraining", when, err)
	}
	checkFor(t, 2*time.Second, func() error {
		if d := late.closedWith(); d == nil || *d != DisconnectRestart {
			return fmt.Errorf("a connection made %s closed with %v, want %v", when, d, DisconnectRestart)
		}
		return nil
	})
	return late
}

// TestHandingOver: from HandingOver on, a new connection is welcomed and
// sent back with 1012 at once (it would join nothing on a node whose
// broker is going away), while those already open are served on.
func TestHandingOver(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	open := &fakeTransport{}
	c, err := h.Connect(open, Identity{}, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	h.HandingOver()
	late := connectSentBack(t, h, "after HandingOver")
	waitFrame(t, late, `"type":"welcome"`)
	h.Receive(c, []byte(`{"type":"join","channel":"c","id":1}`))
	waitFrame(t, open, `"joined"`)
	if d := open.closedWith(); d != nil {
		t.Fatalf("an open connection closed with %v", d)
	}
}

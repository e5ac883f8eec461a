package session

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Joins with a replay deliver each stored message once: found in review,
// each of these delivered one twice.

func countFrames(tr *fakeTransport, s string) int {
	n := 0
	for _, f := range tr.frames() {
		if f == s {
			n++
		}
	}
	return n
}

// A payload that is not an object, stored before the join's last seq and
// arriving live while the joiner is held.
func TestReplayNoDuplicateNonObject(t *testing.T) {
	h, bus := newHistoryHub(t)
	seq := bus.store.store("h.a", []byte(`[9]`))
	bus.store.beforeSince = func() { h.DeliverStored("h.a", seq, 0, []byte(`[9]`)) }
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","history":10,"id":1}`))
	waitFrame(t, tr, `"joined"`)
	time.Sleep(100 * time.Millisecond)
	t.Logf("frames: %q", tr.frames())
	if n := countFrames(tr, `[9]`); n != 1 {
		t.Errorf("[9] delivered %d times", n)
	}
}

// A message at or below the join's last seq still on its way when the
// joiner is released.
func TestReplayNoDuplicateLate(t *testing.T) {
	h, bus := newHistoryHub(t)
	seq := bus.store.store("h.a", []byte(`{"n":1}`))
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","history":10,"id":1}`))
	waitFrame(t, tr, `"joined"`)
	h.DeliverStored("h.a", seq, 0, []byte(`{"n":1}`))
	time.Sleep(100 * time.Millisecond)
	t.Logf("frames: %q", tr.frames())
	if n := countFrames(tr, `{"seq":1,"n":1}`); n != 1 {
		t.Errorf("seq 1 delivered %d times", n)
	}
}

// since on a channel with nothing stored, a message stored meanwhile.
func TestReplayNoDuplicateNothingStored(t *testing.T) {
	h, bus := newHistoryHub(t)
	bus.store.afterLast = func() {
		bus.store.afterLast = nil
		_ = bus.Publish("h.a", []byte(`{"n":1}`))
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","since":0,"id":1}`))
	waitFrame(t, tr, `"joined"`)
	time.Sleep(100 * time.Millisecond)
	t.Logf("frames: %q", tr.frames())
	if n := countFrames(tr, `{"seq":1,"n":1}`); n != 1 {
		t.Errorf("seq 1 delivered %d times", n)
	}
}

// A join of a history channel by a member answers as a first join would:
// joined with seq, and the replay since asks for, once.
func TestRejoinReplays(t *testing.T) {
	h, bus := newHistoryHub(t)
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","id":1}`))
	waitFrame(t, tr, `{"type":"joined","channel":"h.a","seq":0,"id":1}`)
	for _, p := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		_ = bus.Publish("h.a", []byte(p))
	}
	waitFrame(t, tr, `{"seq":3,"n":3}`)
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","since":1,"id":2}`))
	waitFrame(t, tr, `{"type":"joined","channel":"h.a","seq":3,"recovered":true,"id":2}`)
	_ = bus.Publish("h.a", []byte(`{"n":4}`))
	waitFrame(t, tr, `{"seq":4,"n":4}`)
	for seq, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 1} {
		if n := countFrames(tr, fmt.Sprintf(`{"seq":%d,"n":%d}`, seq, seq)); n != want {
			t.Errorf("seq %d delivered %d times, want %d (live, and replayed after since 1): %q", seq, n, want, tr.frames())
		}
	}
}

// A replay longer than the client's queue bounds goes out in parts as the
// client reads, rather than closing it as a slow consumer; one that does
// not read is closed 4001 after replayWait (not waited for here).
func TestReplayLongerThanQueue(t *testing.T) {
	h, bus := newHistoryHubConfig(t, Config{QueueFrames: 16})
	for i := 1; i <= 100; i++ {
		bus.store.store("h.a", fmt.Appendf(nil, `{"n":%d}`, i))
	}
	tr := &fakeTransport{full: true, release: make(chan struct{})}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	// The first parts wait for the client, which reads after a while.
	time.AfterFunc(50*time.Millisecond, func() { close(tr.release) })
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","history":100,"id":1}`))
	waitFrame(t, tr, `{"seq":100,"n":100}`)
	if d := tr.closedWith(); d != nil {
		t.Fatalf("closed with %v", d)
	}
	for i := 1; i <= 100; i++ {
		if n := countFrames(tr, fmt.Sprintf(`{"seq":%d,"n":%d}`, i, i)); n != 1 {
			t.Fatalf("seq %d delivered %d times", i, n)
		}
	}
}

// TestRefillGap: messages the live feed missed (stored, never republished:
// a leader died) are read from the store when the next one shows the gap,
// and delivered in order before it, and before those that came meanwhile;
// a second gap among those refills too; other channels flow on while one
// refills.
func TestRefillGap(t *testing.T) {
	h, bus := newHistoryHub(t)
	ta, tb := &fakeTransport{}, &fakeTransport{}
	a, _ := h.Connect(ta, Identity{User: "a"}, netip.Addr{})
	b, _ := h.Connect(tb, Identity{User: "b"}, netip.Addr{})
	h.Receive(a, []byte(`{"type":"join","channel":"h.a","id":1}`))
	h.Receive(b, []byte(`{"type":"join","channel":"h.b","id":1}`))
	waitFrame(t, ta, `"joined"`)
	waitFrame(t, tb, `"joined"`)
	store := func(n int) uint64 { return bus.store.store("h.a", fmt.Appendf(nil, `{"n":%d}`, n)) }
	live := func(seq, prev uint64) {
		var n int
		for i, m := range bus.store.msgs {
			if m.Seq == seq {
				fmt.Sscanf(string(bus.store.msgs[i].Data), `{"n":%d}`, &n)
			}
		}
		h.DeliverStored("h.a", seq, prev, fmt.Appendf(nil, `{"n":%d}`, n))
	}
	s1 := store(1)
	live(s1, 0)
	waitFrame(t, ta, `{"seq":1,"n":1}`)
	s2, s3, s4 := store(2), store(3), store(4) // 2 and 3 never republished
	s5, s6, s7, s8 := store(5), store(6), store(7), store(8)

	unblock := make(chan struct{})
	bus.store.beforeSince = func() {
		bus.store.beforeSince = nil
		// While h.a refills: h.b's messages flow, h.a's wait their turn,
		// one of them after another gap (6 and 7 missed).
		h.DeliverStored("h.b", bus.store.store("h.b", []byte(`{"b":1}`)), 0, []byte(`{"b":1}`))
		waitFrame(t, tb, `"b":1`)
		live(s5, s4)
		live(s8, s7)
		<-unblock
	}
	go func() { time.Sleep(50 * time.Millisecond); close(unblock) }()
	live(s4, s3)
	waitFrame(t, ta, `{"seq":8,"n":8}`)
	var got []string
	for _, f := range ta.frames() {
		if strings.HasPrefix(f, `{"seq":`) {
			got = append(got, f)
		}
	}
	want := []string{}
	for i, s := range []uint64{s1, s2, s3, s4, s5, s6, s7, s8} {
		want = append(want, fmt.Sprintf(`{"seq":%d,"n":%d}`, s, i+1))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}

// TestServerOpsDoNotWait: Subscribe returns while a connection's worker is
// stuck (a join waiting for the store) with its inbox full; the op runs
// after.
func TestServerOpsDoNotWait(t *testing.T) {
	h, bus := newHistoryHub(t)
	bus.store.store("h.a", []byte(`{"n":1}`))
	unblock := make(chan struct{})
	bus.store.beforeSince = func() { <-unblock }
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	go func() {
		h.Enqueue(c, message(`{"type":"join","channel":"h.a","since":0,"id":1}`))
		for i := 0; i < 2*maxInbox; i++ {
			h.Enqueue(c, message(`{"type":"ping"}`)) // blocks once the inbox is full
		}
	}()
	checkFor(t, 2*time.Second, func() error {
		c.in.mu.Lock()
		defer c.in.mu.Unlock()
		if len(c.in.frames) < maxInbox {
			return fmt.Errorf("%d frames waiting", len(c.in.frames))
		}
		return nil
	})
	done := make(chan int)
	go func() { done <- h.Subscribe("u", "x") }()
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("Subscribe asked %d connections, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe waits for a stuck connection")
	}
	close(unblock)
	waitFrame(t, tr, `{"type":"joined","channel":"x"}`)
}

// storeNews stores {"n":n} in h.a without delivering it, and returns its
// seq and payload.
func storeNews(bus *storeBus, n int) (uint64, []byte) {
	p := fmt.Appendf(nil, `{"n":%d}`, n)
	return bus.store.store("h.a", p), p
}

// newsOf is the "n" fields of tr's frames that carry a seq, in order.
func newsOf(tr *fakeTransport) []string {
	var got []string
	for _, f := range tr.frames() {
		if strings.HasPrefix(f, `{"seq":`) {
			got = append(got, f)
		}
	}
	return got
}

// TestJoinFillsFeedStart: the first joiner on a node makes the node
// subscribe to the channel; a message the stream republished before that
// subscription's interest reached it never comes live. When the first
// message that does come follows one after the join's replay (it came
// while the joiner was held), the joiner gets the one between from the
// store. Found by TestHistoryReplayUnderLoad under load: a joiner missed
// one message in 599.
func TestJoinFillsFeedStart(t *testing.T) {
	h, bus := newHistoryHub(t)
	store := func(n int) (uint64, []byte) { return storeNews(bus, n) }
	store(1)
	store(2)
	bus.store.afterLast = func() { // the join read last = 2
		bus.store.afterLast = nil
		s3, _ := store(3) // republished before the node's interest: lost
		s4, p4 := store(4)
		h.DeliverStored("h.a", s4, s3, p4) // came live while the joiner is held
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","since":1,"id":1}`))
	waitFrame(t, tr, `{"seq":4,"n":4}`)
	s5, p5 := store(5)
	h.DeliverStored("h.a", s5, 4, p5)
	waitFrame(t, tr, `{"seq":5,"n":5}`)
	want := []string{`{"seq":2,"n":2}`, `{"seq":3,"n":3}`, `{"seq":4,"n":4}`, `{"seq":5,"n":5}`}
	if got := newsOf(tr); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}

// TestFirstLiveAfterReleases: two joiners released before anything came
// live (so neither alone moved the channel's mark), then the first
// message that comes follows one that never came: both get it from the
// store, once, before it.
func TestFirstLiveAfterReleases(t *testing.T) {
	h, bus := newHistoryHub(t)
	store := func(n int) (uint64, []byte) { return storeNews(bus, n) }
	store(1)
	s2, _ := store(2)
	ta, tb := &fakeTransport{}, &fakeTransport{}
	a, _ := h.Connect(ta, Identity{User: "a"}, netip.Addr{})
	b, _ := h.Connect(tb, Identity{User: "b"}, netip.Addr{})
	// Both members, held, as two joins at once make them.
	ch := h.addMember(a, "h.a", h.ruleFor("h.a"), true)
	if h.addMember(b, "h.a", h.ruleFor("h.a"), true) != ch {
		t.Fatal("two channels")
	}
	for _, c := range []*Conn{a, b} {
		if gap := ch.release(c, nil, 0, s2); gap != 0 {
			t.Fatalf("release: a gap to %d before anything came", gap)
		}
	}
	s3, _ := store(3) // republished before the node's interest: lost
	s4, p4 := store(4)
	h.DeliverStored("h.a", s4, s3, p4)
	want := []string{`{"seq":3,"n":3}`, `{"seq":4,"n":4}`}
	for who, tr := range map[string]*fakeTransport{"a": ta, "b": tb} {
		waitFrame(t, tr, `{"seq":4,"n":4}`)
		if got := newsOf(tr); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: delivered %q, want %q", who, got, want)
		}
	}
}

// TestJoinNothingStoredFillsFeedStart: a join that found nothing stored
// (seq 0) is covered too: the first message to come follows one that never
// came, and the joiner gets both.
func TestJoinNothingStoredFillsFeedStart(t *testing.T) {
	h, bus := newHistoryHub(t)
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","id":1}`))
	waitFrame(t, tr, `"seq":0`)
	bus.store.store("h.a", []byte(`{"n":1}`)) // republished before the node's interest: lost
	s2 := bus.store.store("h.a", []byte(`{"n":2}`))
	h.DeliverStored("h.a", s2, s2-1, []byte(`{"n":2}`))
	waitFrame(t, tr, `{"seq":2,"n":2}`)
	want := []string{`{"seq":1,"n":1}`, `{"seq":2,"n":2}`}
	if got := newsOf(tr); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}

// TestRejoinFailureKeepsDelivering: a member whose join again fails (the
// store is failing over) stays a member and keeps getting the channel's
// messages, those held during the failed join included.
func TestRejoinFailureKeepsDelivering(t *testing.T) {
	h, bus := newHistoryHub(t)
	store := func(n int) (uint64, []byte) { return storeNews(bus, n) }
	s1, _ := store(1)
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","id":1}`))
	waitFrame(t, tr, `"joined"`)
	s2, p2 := store(2)
	h.DeliverStored("h.a", s2, s1, p2)
	waitFrame(t, tr, `{"seq":2,"n":2}`)

	bus.store.mu.Lock()
	bus.store.fail = ErrStoreUnavailable
	bus.store.mu.Unlock()
	s3, p3 := store(3)
	bus.store.afterLast = func() { // arrives while the join again is held
		bus.store.afterLast = nil
		h.DeliverStored("h.a", s3, s2, p3)
	}
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","id":2}`))
	waitFrame(t, tr, `"code":"unavailable"`)
	bus.store.mu.Lock()
	bus.store.fail = nil
	bus.store.mu.Unlock()
	s4, p4 := store(4)
	h.DeliverStored("h.a", s4, s3, p4)
	waitFrame(t, tr, `{"seq":4,"n":4}`)
	want := []string{`{"seq":2,"n":2}`, `{"seq":3,"n":3}`, `{"seq":4,"n":4}`}
	if got := newsOf(tr); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
}

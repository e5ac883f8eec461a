package session

import (
	"fmt"
	"net/netip"
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

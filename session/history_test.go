package session

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// memStore is a HistoryStore in memory, with one sequence for every
// channel, as a stream has; fail makes every call fail.
type memStore struct {
	mu   sync.Mutex
	msgs []Stored // every channel's, in seq order
	chs  []string // msgs[i]'s channel
	fail error
	// beforeSince runs at the start of Since, and afterLast at the end of
	// Last, to publish while a join replays.
	beforeSince, afterLast func()
}

func (s *memStore) store(channel string, payload []byte) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := uint64(len(s.msgs) + 1)
	s.msgs = append(s.msgs, Stored{seq, payload})
	s.chs = append(s.chs, channel)
	return seq
}

func (s *memStore) Last(_ context.Context, channel string) (uint64, error) {
	if s.afterLast != nil {
		defer s.afterLast()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.chs[i] == channel {
			return s.msgs[i].Seq, nil
		}
	}
	return 0, nil
}

func (s *memStore) Since(_ context.Context, channel string, from, upTo uint64, limit int) ([]Stored, error) {
	if s.beforeSince != nil {
		s.beforeSince()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Stored
	for i, m := range s.msgs {
		if s.chs[i] == channel && m.Seq >= from && (upTo == 0 || m.Seq <= upTo) && (limit == 0 || len(out) < limit) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (s *memStore) Tail(ctx context.Context, channel string, n int, upTo uint64) ([]Stored, error) {
	all, err := s.Since(ctx, channel, 1, upTo, 0)
	return all[max(0, len(all)-n):], err
}

func (s *memStore) Has(ctx context.Context, channel string, seq uint64) (bool, error) {
	got, _ := s.Since(ctx, channel, seq, seq, 1)
	return len(got) == 1, nil
}

func (s *memStore) Publish(_ context.Context, channel string, payload []byte, _ string) (uint64, error) {
	return s.store(channel, payload), nil
}

// storeBus delivers a history channel's publishes as its store would:
// stored, then republished with their seq.
type storeBus struct {
	loopBus
	store *memStore
}

func (b *storeBus) Publish(ch string, p []byte) error {
	if strings.HasPrefix(ch, "h.") {
		seq := b.store.store(ch, p)
		b.hub.DeliverStored(ch, seq, 0, p)
		return nil
	}
	return b.loopBus.Publish(ch, p)
}

func newHistoryHub(t *testing.T) (*Hub, *storeBus) {
	t.Helper()
	return newHistoryHubConfig(t, Config{})
}

// newHistoryHubConfig is newHistoryHub with cfg's settings.
func newHistoryHubConfig(t *testing.T, cfg Config) (*Hub, *storeBus) {
	t.Helper()
	store := &memStore{}
	rule := DefaultRule()
	rule.Pattern, rule.History, rule.Announce = MustPattern("h.>"), 100, false
	bus := &storeBus{loopBus: loopBus{subs: map[string]int{}}, store: store}
	be := &fakeBackend{send: func(context.Context, string, []byte, bool) ([]byte, error) { return nil, ErrNoHandler }}
	cfg.Node, cfg.Rules, cfg.History = "n1", []Rule{rule}, store
	h, err := New(cfg, bus, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.hub = h
	return h, bus
}

// TestJoinSinceWhilePublishing: messages published while a join's replay
// is read reach the joiner once, after the replay, in order.
func TestJoinSinceWhilePublishing(t *testing.T) {
	h, bus := newHistoryHub(t)
	for i := 1; i <= 3; i++ {
		_ = bus.Publish("h.a", fmt.Appendf(nil, `{"type":"news","n":%d}`, i))
	}
	n := 3
	bus.store.beforeSince = func() { // live traffic during the replay
		n++
		_ = bus.Publish("h.a", fmt.Appendf(nil, `{"type":"news","n":%d}`, n))
	}
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","since":1,"id":1}`))
	waitFrame(t, tr, `"recovered":true`)
	bus.store.beforeSince = nil
	_ = bus.Publish("h.a", []byte(`{"type":"news","n":5}`))
	_ = bus.Publish("h.a", []byte(`[1,2]`)) // not an object: no seq
	waitFrame(t, tr, `[1,2]`)
	var got []string
	for _, f := range tr.frames() {
		if strings.Contains(f, `"news"`) || f == `[1,2]` {
			got = append(got, f)
		}
	}
	want := []string{
		`{"seq":2,"type":"news","n":2}`, `{"seq":3,"type":"news","n":3}`, `{"seq":4,"type":"news","n":4}`,
		`{"seq":5,"type":"news","n":5}`, `[1,2]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("frames after join since 1:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestJoinUnavailable: a store that does not answer fails the join with
// unavailable, counted as such, and leaves no membership.
func TestJoinUnavailable(t *testing.T) {
	h, bus := newHistoryHub(t)
	bus.store.fail = ErrStoreUnavailable
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"h.a","id":1}`))
	waitFrame(t, tr, `"code":"unavailable"`)
	if n := h.Stats().Errors[CodeUnavailable]; n != 1 {
		t.Fatalf("unavailable errors counted %d, want 1 (%v)", n, h.Stats().Errors)
	}
	if _, chans := h.Counts(); chans != 0 {
		t.Fatalf("%d channels after a failed join", chans)
	}
}

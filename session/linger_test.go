package session

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestAnnouncementsGathered: in a channel of more than lingerAt members,
// joins announced a few milliseconds apart reach a member in one write,
// not one write each.
func TestAnnouncementsGathered(t *testing.T) {
	quiet := DefaultRule() // the joins below announce nothing themselves
	quiet.Announce = false
	h, _, _ := newTestHub(t, Config{Rules: []Rule{quiet}})
	var first *fakeTransport
	for i := 0; i <= lingerAt; i++ {
		tr := &fakeTransport{}
		c, _ := h.Connect(tr, Identity{User: "u" + strconv.Itoa(i)}, netip.Addr{})
		h.Receive(c, []byte(`{"type":"join","channel":"big"}`))
		if first == nil {
			first = tr
		}
	}
	waitFrame(t, first, `{"type":"joined","channel":"big"}`)
	first.mu.Lock()
	before := first.writes
	first.mu.Unlock()
	const announcements = 4
	for i := 0; i < announcements; i++ {
		h.DeliverChannel("big", encodeControl("big", "late"+strconv.Itoa(i), "joined"))
		time.Sleep(time.Millisecond) // time enough for a dispatch that does not wait
	}
	waitCount(t, first, `"msg":"joined"`, announcements)
	first.mu.Lock()
	writes := first.writes - before
	first.mu.Unlock()
	if writes >= announcements {
		t.Fatalf("%d announcements took %d writes: not gathered", announcements, writes)
	}
}

func TestAnnounceLinger(t *testing.T) {
	for n, want := range map[int]time.Duration{
		65:     10 * time.Millisecond,
		200:    10 * time.Millisecond,
		1000:   50 * time.Millisecond,
		5000:   100 * time.Millisecond,
		100000: 100 * time.Millisecond,
	} {
		if got := announceLinger(n); got != want {
			t.Errorf("announceLinger(%d) = %v, want %v", n, got, want)
		}
	}
}

package session

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestRosterChanges: from the first call on, RosterChanges reports each
// connection whose entry changed (connected, joined, left) with its
// entry, and those gone; nothing twice.
func TestRosterChanges(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	early, _ := h.Connect(&fakeTransport{}, Identity{User: "early"}, netip.Addr{})
	if changed, gone := h.RosterChanges(); changed != nil || gone != nil {
		t.Fatalf("changes before the first call: %v %v", changed, gone)
	}
	ta := &fakeTransport{}
	a, _ := h.Connect(ta, Identity{User: "alice"}, netip.MustParseAddr("127.0.0.1"))
	h.Receive(a, []byte(`{"type":"join","channel":"lobby","id":1}`))
	waitFrame(t, ta, `{"type":"joined","channel":"lobby","id":1}`)
	changed, gone := h.RosterChanges()
	want := map[string]Member{a.ID(): {User: "alice", Remote: "127.0.0.1", Channels: []string{"lobby"}}}
	if !reflect.DeepEqual(changed, want) || gone != nil {
		t.Fatalf("after connect and join: %v %v, want %v", changed, gone, want)
	}
	if changed, gone := h.RosterChanges(); changed != nil || gone != nil {
		t.Fatalf("reported twice: %v %v", changed, gone)
	}

	h.Receive(a, []byte(`{"type":"leave","channel":"lobby","id":2}`))
	waitFrame(t, ta, `{"type":"left","channel":"lobby","id":2}`)
	changed, _ = h.RosterChanges()
	if m, ok := changed[a.ID()]; !ok || len(m.Channels) != 0 {
		t.Fatalf("after leave: %v", changed)
	}

	h.Receive(early, []byte(`{"type":"join","channel":"x"}`))
	early.Close(DisconnectGoingAway)
	a.Close(DisconnectGoingAway)
	waitClosed(t, ta, CloseGoingAway)
	h.ReadEnded(early, nil) // their sockets closed
	h.ReadEnded(a, nil)
	goneAll := map[string]bool{}
	checkFor(t, 2*time.Second, func() error {
		_, gone := h.RosterChanges()
		for _, id := range gone {
			goneAll[id] = true
		}
		if !goneAll[a.ID()] || !goneAll[early.ID()] || len(goneAll) != 2 {
			return fmt.Errorf("gone %v", goneAll)
		}
		return nil
	})
	if got := h.Roster(); len(got) != 0 {
		t.Fatalf("roster after both closed: %v", got)
	}
}

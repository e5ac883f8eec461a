package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

func member(user string, channels ...string) session.Member {
	return session.Member{User: user, Channels: channels}
}

// TestRosterDeltas: deltas apply in order on a whole roster; one that does
// not follow, a number that differs, and a node not held ask for the
// whole roster; a whole roster in parts replaces what is held once
// complete; an older one is ignored.
func TestRosterDeltas(t *testing.T) {
	r := newRosters()
	conns := func() map[string]session.Member { return r.byNode["a"].conns }

	if !r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterDelta, Gen: 1, Conns: map[string]session.Member{"c1": member("u1")}}) {
		t.Fatal("a delta for a roster not held: want the whole roster")
	}
	if !r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterGen, Gen: 1}) {
		t.Fatal("a number for a roster not held: want the whole roster")
	}
	r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterFull, Gen: 5, Part: 0, Parts: 2, Conns: map[string]session.Member{"c1": member("u1", "x")}})
	if r.byNode["a"] != nil {
		t.Fatal("half a roster taken")
	}
	r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterFull, Gen: 5, Part: 1, Parts: 2, Conns: map[string]session.Member{"c2": member("u2")}})
	if want := map[string]session.Member{"c1": member("u1", "x"), "c2": member("u2")}; !reflect.DeepEqual(conns(), want) {
		t.Fatalf("whole roster: %v, want %v", conns(), want)
	}
	if r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterDelta, Gen: 6,
		Conns: map[string]session.Member{"c3": member("u3", "y")}, Gone: []string{"c1"}}) {
		t.Fatal("a delta that follows: asked for the whole roster")
	}
	if want := map[string]session.Member{"c2": member("u2"), "c3": member("u3", "y")}; !reflect.DeepEqual(conns(), want) {
		t.Fatalf("after a delta: %v, want %v", conns(), want)
	}
	if r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterGen, Gen: 6}) {
		t.Fatal("the held number: asked for the whole roster")
	}
	if !r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterDelta, Gen: 8, Gone: []string{"c2"}}) {
		t.Fatal("a delta after a lost one: applied")
	}
	if _, ok := conns()["c2"]; !ok || r.byNode["a"].gen != 6 {
		t.Fatal("a delta after a lost one changed the roster")
	}
	if !r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterGen, Gen: 8}) {
		t.Fatal("a number past the held one: not asked for")
	}
	r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterFull, Gen: 4, Parts: 1})
	if len(conns()) != 2 {
		t.Fatal("an older whole roster replaced a newer one")
	}
}

// TestRosterNewInstance: a node back as a new instance makes the old
// instance's roster a dead one, if it was seen live.
func TestRosterNewInstance(t *testing.T) {
	r := newRosters()
	r.receive(rosterMsg{Node: "a", Instance: "i1", Kind: rosterFull, Gen: 1, Parts: 1, Conns: map[string]session.Member{"c1": member("u1", "x")}})
	r.byNode["a"].seenLive = true
	if !r.receive(rosterMsg{Node: "a", Instance: "i2", Kind: rosterDelta, Gen: 1}) {
		t.Fatal("a new instance's delta: not asked for its roster")
	}
	if len(r.orphans) != 1 || r.orphans[0].name != "a" || len(r.orphans[0].r.conns) != 1 || r.byNode["a"] != nil {
		t.Fatalf("orphans %v, held %v", r.orphans, r.byNode["a"])
	}
}

func TestRosterWantSpaced(t *testing.T) {
	r := newRosters()
	now := time.Now()
	if !r.shouldWant("a", now) || r.shouldWant("a", now.Add(rosterWantEvery/2)) || !r.shouldWant("b", now) {
		t.Fatal("asks not spaced per node")
	}
	if !r.shouldWant("a", now.Add(rosterWantEvery)) {
		t.Fatal("a node not asked again")
	}
}

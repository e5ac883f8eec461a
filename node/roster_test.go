package node

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/broker"
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

// TestSplitRoster: parts hold at most rosterPartConns connections and
// about rosterPartBytes of JSON, every connection and gone id once.
func TestSplitRoster(t *testing.T) {
	if parts := splitRoster(nil, nil); len(parts) != 1 || len(parts[0].conns) != 0 {
		t.Fatalf("an empty roster: %d parts", len(parts))
	}
	conns := map[string]session.Member{}
	var channels []string
	for i := 0; i < 200; i++ {
		channels = append(channels, fmt.Sprintf("a.rather.long.channel.name.%03d", i))
	}
	for i := 0; i < 3000; i++ {
		m := member(fmt.Sprintf("u%d", i))
		if i%10 == 0 {
			m.Channels = channels // 6 KiB of channel names
		}
		conns[fmt.Sprintf("c%05d", i)] = m
	}
	var gone []string
	for i := 0; i < 2500; i++ {
		gone = append(gone, fmt.Sprintf("g%05d", i))
	}
	parts := splitRoster(conns, gone)
	seen := map[string]bool{}
	for i, p := range parts {
		if n := len(p.conns) + len(p.gone); n > rosterPartConns {
			t.Errorf("part %d: %d connections", i, n)
		}
		b, _ := json.Marshal(rosterMsg{Conns: p.conns, Gone: p.gone})
		if len(b) > rosterPartBytes+8<<10 {
			t.Errorf("part %d: %d bytes", i, len(b))
		}
		for id := range p.conns {
			seen[id] = true
		}
		for _, id := range p.gone {
			seen[id] = true
		}
	}
	if len(seen) != len(conns)+len(gone) {
		t.Fatalf("%d ids in the parts, want %d", len(seen), len(conns)+len(gone))
	}
}

// TestAnnouncer: a dead node's members are announced by the live node
// with the lowest name other than the dead one, which may be live again
// as a new instance.
func TestAnnouncer(t *testing.T) {
	live := map[string]broker.Node{"a": {Name: "a"}, "b": {Name: "b"}, "c": {Name: "c"}}
	if got := announcer(live, "a", "b"); got != "b" {
		t.Fatalf("a back as a new instance: %s announces, want b", got)
	}
	if got := announcer(live, "d", "c"); got != "a" {
		t.Fatalf("d dead: %s announces, want a", got)
	}
}

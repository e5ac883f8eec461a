package node

import (
	"encoding/json"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/session"
)

// Rosters: a dead node's members leave (issue 14). A node killed outright
// tells nobody that its connections are gone, so every node keeps the
// others' rosters (each connection's user and channels), which each node
// publishes on <prefix>.cluster.roster, a subject of the nodes' own:
// whenever it changed, at most every rosterEvery, and in any case every
// rosterRefresh for nodes that joined since; a node alone publishes
// nothing, and the whole roster as soon as another node appears. When a
// node's beats stop (the
// cluster view drops it after three missed heartbeats), or it comes back
// as a new instance, the live node with the lowest name makes its members
// leave: "left" control frames where the rules announce, leave and
// disconnect events, once. A node that shuts down publishes an empty
// roster first: its clients left the usual way.
//
// A roster is as old as its last publication: members that joined within
// rosterEvery of a node's death are not announced as leaving.

const (
	rosterEvery   = time.Second
	rosterRefresh = 10 * time.Second
	// rosterPart bounds the connections of one message; a roster is sent
	// in as many parts as it takes.
	rosterPart = 2000
)

// rosterMsg is one part of a node's roster.
type rosterMsg struct {
	Node     string                    `json:"node"`
	Instance string                    `json:"instance"`
	Gen      uint64                    `json:"gen"`
	Part     int                       `json:"part"`
	Parts    int                       `json:"parts"`
	Conns    map[string]session.Member `json:"conns"`
}

// rosters are the other nodes' rosters, as last received whole.
type rosters struct {
	mu       sync.Mutex
	byNode   map[string]*remoteRoster // guarded by mu
	assembly map[string]*remoteRoster // guarded by mu; rosters arriving in parts
}

type remoteRoster struct {
	instance string
	gen      uint64
	parts    int
	got      int
	conns    map[string]session.Member
	// seenLive is set once the cluster view has shown the node live with
	// this roster: a roster that arrives before the node's first beat is
	// not a dead node's.
	seenLive bool
}

func (r *rosters) receive(m rosterMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := m.Node + "/" + m.Instance
	a := r.assembly[key]
	if a == nil || a.gen != m.Gen {
		a = &remoteRoster{instance: m.Instance, gen: m.Gen, parts: m.Parts, conns: make(map[string]session.Member)}
		r.assembly[key] = a
	}
	for id, mem := range m.Conns {
		a.conns[id] = mem
	}
	if a.got++; a.got < a.parts {
		return
	}
	delete(r.assembly, key)
	old := r.byNode[m.Node]
	if old != nil && old.instance == m.Instance {
		if old.gen > m.Gen {
			return // an older generation, late
		}
		a.seenLive = old.seenLive
	}
	r.byNode[m.Node] = a
}

// runRoster publishes this node's roster and makes dead nodes' members
// leave, until stop closes.
func (n *Node) runRoster(stop <-chan struct{}) {
	defer n.streams.Done()
	t := time.NewTicker(rosterEvery)
	defer t.Stop()
	var lastSum uint64
	var lastSent time.Time
	var gen uint64
	for {
		select {
		case <-stop:
			// The hub has closed its clients, announcing them: an empty
			// roster tells the others there is nothing left to announce.
			n.publishRoster(nil, gen+1)
			return
		case <-t.C:
		}
		if len(n.broker.Nodes()) <= 1 {
			// Alone: nobody to tell, and a node that joins gets the
			// roster at once (lastSent is reset).
			lastSent = time.Time{}
		} else {
			roster := n.hub.Roster()
			if sum := rosterSum(roster); sum != lastSum || time.Since(lastSent) >= rosterRefresh {
				gen++
				n.publishRoster(roster, gen)
				lastSum, lastSent = sum, time.Now()
			}
		}
		n.departDead()
	}
}

// publishRoster publishes roster in parts.
func (n *Node) publishRoster(roster map[string]session.Member, gen uint64) {
	ids := make([]string, 0, len(roster))
	for id := range roster {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := max(1, (len(ids)+rosterPart-1)/rosterPart)
	nc := n.broker.Conn()
	for p := 0; p < parts; p++ {
		m := rosterMsg{Node: n.cfg.Node, Instance: n.broker.Instance(), Gen: gen, Part: p, Parts: parts,
			Conns: make(map[string]session.Member, rosterPart)}
		for _, id := range ids[p*rosterPart : min(len(ids), (p+1)*rosterPart)] {
			m.Conns[id] = roster[id]
		}
		b, err := json.Marshal(m)
		if err == nil {
			err = nc.Publish(n.rosterSubject(), b)
		}
		if err != nil {
			n.log.Warn("roster not published", "err", err)
			return
		}
	}
}

func (n *Node) rosterSubject() string { return n.broker.Subjects().Prefix + ".cluster.roster" }

// onRoster takes another node's roster part.
func (n *Node) onRoster(msg *nats.Msg) {
	var m rosterMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Node == "" || m.Node == n.cfg.Node || m.Parts < 1 {
		return
	}
	n.rosters.receive(m)
}

// departDead makes the members of the nodes that are no longer live (or
// live as another instance) leave, if this node is the live node with the
// lowest name; every node forgets those rosters.
func (n *Node) departDead() {
	live := map[string]broker.Node{}
	lowest := n.cfg.Node
	for _, node := range n.broker.Nodes() {
		live[node.Name] = node
		lowest = min(lowest, node.Name)
	}
	n.rosters.mu.Lock()
	var dead []struct {
		name string
		r    *remoteRoster
	}
	for name, r := range n.rosters.byNode {
		if l, ok := live[name]; ok && (l.Instance == "" || l.Instance == r.instance) {
			r.seenLive = true
			continue
		}
		if !r.seenLive {
			continue // not seen live yet: its first beat may be on its way
		}
		dead = append(dead, struct {
			name string
			r    *remoteRoster
		}{name, r})
		delete(n.rosters.byNode, name)
	}
	n.rosters.mu.Unlock()
	if lowest != n.cfg.Node {
		return
	}
	for _, d := range dead {
		if len(d.r.conns) > 0 {
			n.log.Info("a node is gone: its members leave", "node", d.name, "connections", len(d.r.conns))
		}
		for id, m := range d.r.conns {
			n.hub.DepartDead(d.name, id, m)
		}
	}
}

// rosterSum is a digest of roster, to publish it only when it changed.
func rosterSum(roster map[string]session.Member) uint64 {
	var sum uint64
	for id, m := range roster {
		h := fnv.New64a()
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(m.User))
		for _, c := range m.Channels {
			h.Write([]byte{0})
			h.Write([]byte(c))
		}
		sum ^= h.Sum64() // order-free
	}
	return sum ^ uint64(len(roster))
}

package node

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/session"
)

// Rosters: a dead node's members leave (issue 14). A node killed outright
// tells nobody that its connections are gone, so every node keeps the
// others' rosters (each connection's user and channels). A node publishes
// on <prefix>.cluster.roster, a subject of the nodes' own, what changed in
// its roster at most every rosterEvery (a delta, numbered), its whole
// roster when another node asks for it on <prefix>.cluster.roster.want (a
// node it has no roster of, or a delta that does not follow the one it
// holds), and every rosterCheck its last number alone, so that a lost
// delta is noticed. A node alone publishes nothing.
//
// When a node's beats stop (the cluster view drops it after three missed
// heartbeats), or it comes back as a new instance, the live node with the
// lowest name makes its members leave: "left" control frames where the
// rules announce, leave and disconnect events, once. A node that shuts
// down publishes an empty roster first: its clients left the usual way.
//
// A roster is as old as its last delta: members that joined within
// rosterEvery of a node's death are not announced as leaving.

const (
	rosterEvery = time.Second
	rosterCheck = 10 * time.Second
	// rosterWantEvery spaces out the asks for one node's roster.
	rosterWantEvery = 2 * time.Second
	// rosterPartConns and rosterPartBytes bound the connections and the size of
	// one message (NATS's is 1 MiB at most); a roster or a delta is sent in
	// as many messages as it takes.
	rosterPartConns = 2000
	rosterPartBytes = 256 << 10
)

// Kinds of roster messages.
const (
	rosterFull  = "full"  // one part of the whole roster, numbered Gen
	rosterDelta = "delta" // changes since Gen-1
	rosterGen   = "gen"   // the sender's last Gen, nothing else
)

// rosterMsg is one roster message of a node.
type rosterMsg struct {
	Node     string                    `json:"node"`
	Instance string                    `json:"instance"`
	Kind     string                    `json:"kind"`
	Gen      uint64                    `json:"gen"`
	Part     int                       `json:"part,omitempty"`
	Parts    int                       `json:"parts,omitempty"`
	Conns    map[string]session.Member `json:"conns,omitempty"`
	Gone     []string                  `json:"gone,omitempty"`
}

// rosterWant asks Node for its whole roster.
type rosterWant struct {
	Node string `json:"node"`
}

// rosters are the other nodes' rosters.
type rosters struct {
	mu       sync.Mutex
	byNode   map[string]*remoteRoster // guarded by mu
	assembly map[string]*remoteRoster // guarded by mu; whole rosters arriving in parts, by node
	orphans  []deadRoster             // guarded by mu; rosters of instances replaced by a new one
	wanted   map[string]time.Time     // guarded by mu; when a node's roster was last asked for
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

type deadRoster struct {
	name string
	r    *remoteRoster
}

func newRosters() rosters {
	return rosters{byNode: map[string]*remoteRoster{}, assembly: map[string]*remoteRoster{}, wanted: map[string]time.Time{}}
}

// receive takes one message; it reports whether the sender's whole roster
// should be asked for (a delta or a number that does not follow what is
// held).
func (r *rosters) receive(m rosterMsg) (want bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.byNode[m.Node]
	if held != nil && held.instance != m.Instance {
		// The node came back as a new instance: the old one's members
		// are gone, whether or not the cluster view saw it go.
		if held.seenLive {
			r.orphans = append(r.orphans, deadRoster{m.Node, held})
		}
		delete(r.byNode, m.Node)
		held = nil
	}
	switch m.Kind {
	case rosterDelta:
		if held == nil || held.gen+1 != m.Gen {
			return true
		}
		for id, mem := range m.Conns {
			held.conns[id] = mem
		}
		for _, id := range m.Gone {
			delete(held.conns, id)
		}
		held.gen = m.Gen
		return false
	case rosterGen:
		return held == nil || held.gen != m.Gen
	case rosterFull:
	default:
		return false
	}
	// One roster of a node is assembled at a time: the parts of an older
	// one, or an older instance's, that never completed are dropped.
	key := m.Node
	a := r.assembly[key]
	if a == nil || a.gen != m.Gen || a.instance != m.Instance {
		a = &remoteRoster{instance: m.Instance, gen: m.Gen, parts: m.Parts, conns: make(map[string]session.Member)}
		r.assembly[key] = a
	}
	for id, mem := range m.Conns {
		a.conns[id] = mem
	}
	if a.got++; a.got < a.parts {
		return false
	}
	delete(r.assembly, key)
	if held != nil {
		if held.gen > m.Gen {
			return false // an older roster, late
		}
		a.seenLive = held.seenLive
	}
	r.byNode[m.Node] = a
	return false
}

// shouldWant reports whether node's roster may be asked for now, and
// notes that it is.
func (r *rosters) shouldWant(node string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.wanted[node]) < rosterWantEvery {
		return false
	}
	r.wanted[node] = now
	return true
}

// runRoster publishes this node's roster and makes dead nodes' members
// leave, until stop closes.
func (n *Node) runRoster(stop <-chan struct{}) {
	defer n.streams.Done()
	t := time.NewTicker(rosterEvery)
	defer t.Stop()
	var gen uint64
	var lastCheck time.Time
	for {
		select {
		case <-stop:
			if n.handingOver.Load() {
				// The clients are still here, and leave once this
				// node's broker is gone: the others announce them from
				// its roster, which their last changes complete.
				if changed, gone := n.hub.RosterChanges(); len(changed)+len(gone) > 0 && len(n.broker.Nodes()) > 1 {
					n.publishDelta(gen, changed, gone)
				}
				return
			}
			// The hub has closed its clients, announcing them: an empty
			// roster tells the others there is nothing left to announce.
			gen++
			n.publishRoster(rosterFull, gen, nil, nil)
			return
		case <-t.C:
		}
		changed, gone := n.hub.RosterChanges()
		switch {
		case len(n.broker.Nodes()) <= 1:
			// Alone: nobody to tell. Changes dropped still count, so
			// that a node that held this roster asks for it whole.
			if len(changed)+len(gone) > 0 {
				gen++
			}
			n.wantFull.Store(false)
		case n.wantFull.Swap(false):
			gen++
			n.publishRoster(rosterFull, gen, n.hub.Roster(), nil)
		case len(changed)+len(gone) > 0:
			gen = n.publishDelta(gen, changed, gone)
		case time.Since(lastCheck) >= rosterCheck:
			n.publishRoster(rosterGen, gen, nil, nil)
			lastCheck = time.Now()
		}
		n.departDead()
		n.wantMissing()
	}
}

// publishDelta publishes changed and gone as deltas numbered from gen+1,
// and returns the last number.
func (n *Node) publishDelta(gen uint64, changed map[string]session.Member, gone []string) uint64 {
	for _, part := range splitRoster(changed, gone) {
		gen++
		n.publishRoster(rosterDelta, gen, part.conns, part.gone)
	}
	return gen
}

// publishRoster publishes one message of kind, or a whole roster in parts.
func (n *Node) publishRoster(kind string, gen uint64, conns map[string]session.Member, gone []string) {
	base := rosterMsg{Node: n.cfg.Node, Instance: n.broker.Instance(), Kind: kind, Gen: gen}
	msgs := []rosterMsg{base}
	if kind == rosterFull {
		parts := splitRoster(conns, nil)
		msgs = msgs[:0]
		for p, part := range parts {
			m := base
			m.Part, m.Parts, m.Conns = p, len(parts), part.conns
			msgs = append(msgs, m)
		}
	} else {
		msgs[0].Conns, msgs[0].Gone = conns, gone
	}
	nc := n.broker.Conn()
	for _, m := range msgs {
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

// rosterPart is one message's share of a roster or a delta.
type rosterPart struct {
	conns map[string]session.Member
	gone  []string
}

// splitRoster cuts conns and gone into parts of at most rosterPartConns
// connections and about rosterPartBytes of JSON each (a connection in
// many channels is long), at least one part.
func splitRoster(conns map[string]session.Member, gone []string) []rosterPart {
	ids := make([]string, 0, len(conns))
	for id := range conns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := []rosterPart{{conns: map[string]session.Member{}}}
	size := 0
	room := func(add int) *rosterPart {
		p := &parts[len(parts)-1]
		if len(p.conns)+len(p.gone) > 0 && (len(p.conns)+len(p.gone) >= rosterPartConns || size+add > rosterPartBytes) {
			parts = append(parts, rosterPart{conns: map[string]session.Member{}})
			p, size = &parts[len(parts)-1], 0
		}
		size += add
		return p
	}
	for _, id := range ids {
		m := conns[id]
		add := len(id) + len(m.User) + len(m.Remote) + 16
		for _, c := range m.Channels {
			add += len(c) + 3
		}
		room(add).conns[id] = m
	}
	for _, id := range gone {
		p := room(len(id) + 3)
		p.gone = append(p.gone, id)
	}
	return parts
}

func (n *Node) rosterSubject() string { return n.broker.Subjects().Prefix + ".cluster.roster" }

func (n *Node) rosterWantSubject() string {
	return n.broker.Subjects().Prefix + ".cluster.roster.want"
}

// onRoster takes another node's roster message.
func (n *Node) onRoster(msg *nats.Msg) {
	var m rosterMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Node == "" || m.Node == n.cfg.Node {
		return
	}
	if m.Kind == rosterFull && m.Parts < 1 {
		return
	}
	if n.rosters.receive(m) {
		n.wantRoster(m.Node)
	}
}

// onRosterWant answers a node that asks for this node's whole roster: the
// next tick publishes it, once for every ask that came meanwhile.
func (n *Node) onRosterWant(msg *nats.Msg) {
	var w rosterWant
	if json.Unmarshal(msg.Data, &w) == nil && w.Node == n.cfg.Node {
		n.wantFull.Store(true)
	}
}

// wantRoster asks node for its whole roster, unless it was asked lately.
func (n *Node) wantRoster(node string) {
	if !n.rosters.shouldWant(node, time.Now()) {
		return
	}
	b, _ := json.Marshal(rosterWant{Node: node})
	if err := n.broker.Conn().Publish(n.rosterWantSubject(), b); err != nil {
		n.log.Warn("roster not asked for", "node", node, "err", err)
	}
}

// wantMissing asks the live nodes whose roster this node does not hold
// (new nodes, and nodes whose roster was lost) for it.
func (n *Node) wantMissing() {
	var missing []string
	n.rosters.mu.Lock()
	for _, node := range n.broker.Nodes() {
		if node.Name == n.cfg.Node {
			continue
		}
		if r := n.rosters.byNode[node.Name]; r == nil || (node.Instance != "" && node.Instance != r.instance) {
			missing = append(missing, node.Name)
		}
	}
	n.rosters.mu.Unlock()
	for _, node := range missing {
		n.wantRoster(node)
	}
}

// departDead makes the members of the nodes that are no longer live (or
// live as another instance) leave, if this node is, of the live nodes
// other than the dead one (which may be back as a new instance already),
// the one with the lowest name; every node forgets those rosters.
func (n *Node) departDead() {
	live := map[string]broker.Node{}
	for _, node := range n.broker.Nodes() {
		live[node.Name] = node
	}
	n.rosters.mu.Lock()
	dead := n.rosters.orphans
	n.rosters.orphans = nil
	for name, r := range n.rosters.byNode {
		if l, ok := live[name]; ok && (l.Instance == "" || l.Instance == r.instance) {
			r.seenLive = true
			continue
		}
		if !r.seenLive {
			continue // not seen live yet: its first beat may be on its way
		}
		dead = append(dead, deadRoster{name, r})
		delete(n.rosters.byNode, name)
	}
	n.rosters.mu.Unlock()
	for _, d := range dead {
		if announcer(live, d.name, n.cfg.Node) != n.cfg.Node {
			continue
		}
		if len(d.r.conns) > 0 {
			n.log.Info("a node is gone: its members leave", "node", d.name, "connections", len(d.r.conns))
		}
		for id, m := range d.r.conns {
			n.hub.DepartDead(d.name, id, m)
		}
	}
}

// announcer is the node that makes dead's members leave: the live node
// with the lowest name other than dead; self is live.
func announcer(live map[string]broker.Node, dead, self string) string {
	lowest := self
	for name := range live {
		if name != dead && name < lowest {
			lowest = name
		}
	}
	return lowest
}

func (n *Node) subscribeRosters() error {
	nc := n.broker.Conn()
	if _, err := nc.Subscribe(n.rosterSubject(), n.onRoster); err != nil {
		return err
	}
	_, err := nc.Subscribe(n.rosterWantSubject(), n.onRosterWant)
	return err
}

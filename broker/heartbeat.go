package broker

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Node is one node as the cluster sees it, from its heartbeats.
type Node struct {
	Name    string    `json:"node"`
	NATS    string    `json:"nats,omitempty"`
	Cluster string    `json:"cluster,omitempty"`
	At      time.Time `json:"at"`
	Leaving bool      `json:"leaving,omitempty"`
	// Instance is random for every run of a node, Started its start time,
	// and Seq counts its beats from 1: together they tell a node that is
	// still beating from the last beats of one that crashed and was started
	// again under the same name (see claim.go).
	Instance string    `json:"instance,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Seq      uint64    `json:"seq,omitempty"`
	// ServerID is the embedded NATS server's id, so a node can tell whether
	// it still has a route to the node that sent this beat.
	ServerID string `json:"server_id,omitempty"`
	Status
}

// heartbeat publishes this node's beat every Config.Heartbeat until Shutdown.
func (b *Broker) heartbeat() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.beat(false)
		}
	}
}

func (b *Broker) self(leaving bool) Node {
	n := Node{Name: b.cfg.Node, NATS: b.ClientURL(), Cluster: b.ClusterURL(), At: time.Now().UTC(), Leaving: leaving,
		Instance: b.instance, Started: b.since, Seq: b.seq.Add(1)}
	if b.ns != nil {
		n.ServerID = b.ns.ID()
	}
	if b.cfg.Status != nil {
		n.Status = b.cfg.Status()
	}
	return n
}

func (b *Broker) beat(leaving bool) {
	n := b.self(leaving)
	b.view.see(n, time.Now())
	data, _ := json.Marshal(n)
	if err := b.nc.Publish(b.subj.Node(b.cfg.Node), data); err != nil {
		b.log.Debug("heartbeat", "err", err)
	}
}

// onHeartbeat updates the view. A node seen for the first time gets this
// node's beat at once, so views converge in one round trip rather than one
// heartbeat period.
func (b *Broker) onHeartbeat(m *nats.Msg) {
	var n Node
	if err := json.Unmarshal(m.Data, &n); err != nil || n.Name == "" {
		b.log.Warn("bad heartbeat", "subject", m.Subject)
		return
	}
	if n.Name == b.cfg.Node {
		if n.Instance != b.instance && b.otherSelf.Swap(&n.Instance) == nil {
			// Start's check missed it (both started at once): say so once,
			// and keep the view of this node this node's own.
			b.log.Error("another node has this node's name; every node needs its own name", "node", n.Name,
				"instance", n.Instance, "nats", n.NATS)
		}
		if n.Instance != b.instance {
			return
		}
	}
	if isNew := b.view.see(n, time.Now()); isNew && n.Name != b.cfg.Node && !n.Leaving {
		b.log.Info("node joined", "node", n.Name)
		b.mu.Lock()
		stopping := b.stopping
		b.mu.Unlock()
		if !stopping {
			b.beat(false)
		}
	} else if n.Leaving && n.Name != b.cfg.Node {
		b.log.Info("node left", "node", n.Name)
	}
}

// view is the live set of nodes: a node is in it while its last beat is
// younger than ttl and it has not said it is leaving.
type view struct {
	self string
	ttl  time.Duration

	mu    sync.Mutex
	nodes map[string]seen // guarded by mu
	gone  map[string]seen // guarded by mu; nodes that stopped beating or left, for goneKeep
}

// goneKeep is how long the view remembers a node that is gone, for the
// admin page to show it down.
const goneKeep = time.Hour

type seen struct {
	node Node
	at   time.Time // local receive time, so clocks need not agree
}

func newView(self string, ttl time.Duration) *view {
	return &view{self: self, ttl: ttl, nodes: make(map[string]seen), gone: make(map[string]seen)}
}

// see records a beat and reports whether the node was not live before; a
// new instance under a live name (a restart quicker than the TTL) counts as
// new.
func (v *view) see(n Node, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, ok := v.nodes[n.Name]
	wasLive := ok && !old.node.Leaving && now.Sub(old.at) < v.ttl && old.node.Instance == n.Instance
	if n.Leaving {
		delete(v.nodes, n.Name)
		v.gone[n.Name] = seen{node: n, at: now}
		return false
	}
	v.nodes[n.Name] = seen{node: n, at: now}
	delete(v.gone, n.Name)
	return !wasLive
}

// get returns node name's last beat while it is live.
func (v *view) get(name string, now time.Time) (Node, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.nodes[name]
	if !ok || now.Sub(s.at) >= v.ttl {
		return Node{}, false
	}
	return s.node, true
}

// live returns the live nodes sorted by name and forgets the dead.
func (v *view) live(now time.Time) []Node {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Node, 0, len(v.nodes))
	for name, s := range v.nodes {
		if now.Sub(s.at) >= v.ttl {
			delete(v.nodes, name)
			v.gone[name] = s
			continue
		}
		out = append(out, s.node)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// departed returns the nodes that stopped beating (or left) within
// goneKeep and are not live again, sorted by name, each as its last beat
// said, with At the local time of that beat.
func (v *view) departed(now time.Time) []Node {
	v.live(now) // moves the nodes that just stopped beating to gone
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Node
	for name, s := range v.gone {
		if now.Sub(s.at) >= goneKeep {
			delete(v.gone, name)
			continue
		}
		n := s.node
		n.At = s.at
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

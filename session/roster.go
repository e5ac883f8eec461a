package session

import (
	"sync"
	"sync/atomic"
)

// rosterLog collects the connections whose roster entry (Member) changed
// since the last RosterChanges: connected, joined, left or gone. It stays
// off until the first RosterChanges, so a hub nobody asks keeps nothing.
type rosterLog struct {
	on    atomic.Bool
	mu    sync.Mutex
	dirty map[string]struct{} // guarded by mu
}

// touch notes that id's entry changed.
func (l *rosterLog) touch(id string) {
	if !l.on.Load() {
		return
	}
	l.mu.Lock()
	if l.dirty == nil {
		l.dirty = make(map[string]struct{})
	}
	l.dirty[id] = struct{}{}
	l.mu.Unlock()
}

// take returns the changed ids and forgets them.
func (l *rosterLog) take() map[string]struct{} {
	l.on.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.dirty
	l.dirty = nil
	return d
}

// Member is one connection of this node as the cluster's rosters keep it:
// who it is and the channels it is in, so that, should the node die, a
// surviving node can make it leave them.
type Member struct {
	User     string   `json:"u"`
	Remote   string   `json:"r,omitempty"`
	Channels []string `json:"c,omitempty"`
}

// Roster is every connection of this node, by id.
func (h *Hub) Roster() map[string]Member {
	h.mu.RLock()
	conns := make([]*Conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	out := make(map[string]Member, len(conns))
	for _, c := range conns {
		if m, ok := c.member(); ok {
			out[c.id] = m
		}
	}
	return out
}

// RosterChanges returns what changed in Roster since the last call: the
// connections whose entry is new or changed, and those that are gone.
// Changes are kept from the first call on; a caller that calls it
// regularly can keep a copy of the roster current with it.
func (h *Hub) RosterChanges() (changed map[string]Member, gone []string) {
	ids := h.roster.take()
	if len(ids) == 0 {
		return nil, nil
	}
	changed = make(map[string]Member, len(ids))
	for id := range ids {
		h.mu.RLock()
		c := h.conns[id]
		h.mu.RUnlock()
		if c != nil {
			if m, ok := c.member(); ok {
				changed[id] = m
				continue
			}
		}
		gone = append(gone, id)
	}
	return changed, gone
}

// member is c's roster entry; false once c is gone.
func (c *Conn) member() (Member, bool) {
	m := Member{User: c.User(), Remote: c.remoteString()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.channels) > 0 {
		m.Channels = make([]string, 0, len(c.channels))
	}
	for _, ch := range c.channels {
		m.Channels = append(m.Channels, ch.name)
	}
	return m, !c.gone
}

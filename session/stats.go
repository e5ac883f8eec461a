package session

import "sync/atomic"

// counters are the hub's running totals; hot paths add to them once per
// message or per batch, never per member.
type counters struct {
	received      atomic.Uint64
	delivered     atomic.Uint64
	slowConsumers atomic.Uint64
	errors        [7]atomic.Uint64 // by codeIndex
}

var codeIndex = map[Code]int{
	CodeBadRequest: 0, CodeBadChannel: 1, CodeForbidden: 2, CodeTooManyChannels: 3,
	CodeRateLimited: 4, CodeNoHandler: 5, CodeTimeout: 6,
}

func (s *counters) countError(c Code) { s.errors[codeIndex[c]].Add(1) }

// Stats is a snapshot of a hub's gauges and counters.
type Stats struct {
	Connections   int
	Channels      int
	Received      uint64          // client frames received
	Delivered     uint64          // frames handed to client connections
	SlowConsumers uint64          // connections closed with 4001
	Errors        map[Code]uint64 // error frames sent, by code
}

// Stats returns the hub's current figures.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Channels: len(h.channels)}
	h.mu.RUnlock()
	s.Received = h.stats.received.Load()
	s.Delivered = h.stats.delivered.Load()
	s.SlowConsumers = h.stats.slowConsumers.Load()
	s.Errors = make(map[Code]uint64, len(Codes))
	for _, c := range Codes {
		s.Errors[c] = h.stats.errors[codeIndex[c]].Load()
	}
	return s
}

// Counts returns the numbers of connections and channels on this node.
func (h *Hub) Counts() (connections, channels int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns), len(h.channels)
}

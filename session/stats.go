package session

import (
	"sync/atomic"
	"time"
)

// counters are the hub's running totals; hot paths add to them once per
// message or per batch, never per member.
type counters struct {
	received      atomic.Uint64
	delivered     atomic.Uint64
	slowConsumers atomic.Uint64
	dropped       atomic.Uint64
	droppedLogged atomic.Int64              // when a drop was last logged, in ns since the hub's epoch
	errors        [len(Codes)]atomic.Uint64 // by codeIndex
	recovered     atomic.Uint64             // joins with since whose message since was still stored
	unrecovered   atomic.Uint64             // joins with since whose message since was not
	presence      atomic.Uint64             // presence frames answered
}

// codeIndex is the index of each code in Codes.
var codeIndex = func() map[Code]int {
	m := make(map[Code]int, len(Codes))
	for i, c := range Codes {
		m[c] = i
	}
	return m
}()

func (s *counters) countError(c Code) { s.errors[codeIndex[c]].Add(1) }

// Stats is a snapshot of a hub's gauges and counters.
type Stats struct {
	Connections   int             `json:"connections"`
	Channels      int             `json:"channels"`
	Received      uint64          `json:"received"`       // client frames received
	Delivered     uint64          `json:"delivered"`      // frames handed to client connections
	SlowConsumers uint64          `json:"slow_consumers"` // connections closed with 4001
	Dropped       uint64          `json:"dropped"`        // channel messages dropped over a channel's backlog bound
	Errors        map[Code]uint64 `json:"errors"`         // error frames sent, by code
	Recovered     uint64          `json:"recovered"`      // joins with since that recovered (PROTOCOL.md §6)
	Unrecovered   uint64          `json:"unrecovered"`    // joins with since that could not (recovered:false)
	Presence      uint64          `json:"presence"`       // presence frames answered
}

// Stats returns the hub's current figures.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Channels: len(h.channels)}
	h.mu.RUnlock()
	s.Received = h.stats.received.Load()
	s.Delivered = h.stats.delivered.Load()
	s.SlowConsumers = h.stats.slowConsumers.Load()
	s.Dropped = h.stats.dropped.Load()
	s.Recovered, s.Unrecovered = h.stats.recovered.Load(), h.stats.unrecovered.Load()
	s.Presence = h.stats.presence.Load()
	s.Errors = make(map[Code]uint64, len(Codes))
	for _, c := range Codes {
		s.Errors[c] = h.stats.errors[codeIndex[c]].Load()
	}
	return s
}

// Traffic returns the client frames received and the frames delivered
// since the hub started.
func (h *Hub) Traffic() (received, delivered uint64) {
	return h.stats.received.Load(), h.stats.delivered.Load()
}

// Counts returns the numbers of connections and channels on this node.
func (h *Hub) Counts() (connections, channels int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns), len(h.channels)
}

// dropped counts a message of channel dropped over its backlog bound, and
// logs it at most once a second.
func (h *Hub) dropped(channel string) {
	h.stats.dropped.Add(1)
	now := int64(h.now())
	last := h.stats.droppedLogged.Load()
	if now-last >= int64(time.Second) && h.stats.droppedLogged.CompareAndSwap(last, now) {
		h.log.Warn("channel backlog over its bound: messages dropped (the node cannot fan out as fast as they come)",
			logChannel, channel, "bound_bytes", maxChannelBacklog, "dropped_total", h.stats.dropped.Load())
	}
}

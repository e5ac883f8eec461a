package session

import (
	"bytes"
)

// DeliverChannel hands payload, published to channel, to its local members.
// The hub keeps payload; the caller must not change it.
func (h *Hub) DeliverChannel(channel string, payload []byte) {
	h.mu.RLock()
	ch := h.channels[channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	h.deliverChannel(ch, payload, payload, 0)
}

// deliverChannel hands frame, the payload as ch's members get it, to them;
// payload is as it was published.
func (h *Hub) deliverChannel(ch *channel, payload, frame []byte, seq uint64) {
	linger := false
	if bytes.HasPrefix(payload, controlPrefix) {
		n := ch.size()
		if limit := ch.rule.AnnounceLimit; limit > 0 && n > limit {
			return // a big channel stays quiet (Rule.AnnounceLimit)
		}
		linger = n > lingerAt
	}
	ch.deliver(h, frame, linger, seq)
}

// controlPrefix starts every control frame encodeControl builds.
var controlPrefix = []byte(`{"type":"control"`)

// DeliverUser hands payload to every local connection of user.
func (h *Hub) DeliverUser(user string, payload []byte) {
	frame := textFrame(payload)
	n := 0
	h.mu.RLock()
	for _, c := range h.users[user] {
		if c.out.send(frame, 1) {
			n++
		}
	}
	anon := h.anonymous(user)
	h.mu.RUnlock()
	if anon != nil && anon.out.send(frame, 1) {
		n++
	}
	h.stats.delivered.Add(uint64(n))
}

// DeliverConn hands payload to the local connection with that id, if any.
func (h *Hub) DeliverConn(id string, payload []byte) {
	h.mu.RLock()
	c := h.conns[id]
	h.mu.RUnlock()
	if c != nil && c.out.send(textFrame(payload), 1) {
		h.stats.delivered.Add(1)
	}
}

// DeliverAll hands payload to every local connection.
func (h *Hub) DeliverAll(payload []byte) {
	frame := textFrame(payload)
	n := 0
	h.mu.RLock()
	for _, c := range h.conns {
		if c.out.send(frame, 1) {
			n++
		}
	}
	h.mu.RUnlock()
	h.stats.delivered.Add(uint64(n))
}

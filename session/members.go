package session

import (
	"strings"
)

// disconnect ends c after its socket closed: it leaves every channel (the
// remaining members are told), is forgotten, and the handler is told. It is
// safe to call more than once.
func (h *Hub) disconnect(c *Conn, reason error) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	chans := c.channels
	c.channels = nil
	if c.requests != nil {
		c.requests.cancel()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
	c.out.abandon()

	for _, ch := range chans {
		h.part(c, ch)
	}
	c.mu.Lock()
	user, named := c.user, c.userSet
	key, b := c.limitKey(), c.bucket
	c.mu.Unlock()
	h.limits.release(key, b, h.now())
	h.mu.Lock()
	delete(h.conns, c.id)
	h.roster.touch(c.id)
	if named {
		h.unindexUser(c, user)
	}
	h.mu.Unlock()
	h.remoteEvent(c, "disconnect")
	h.handler.OnDisconnect(c, reason)
	h.live.Add(-1)
}

func (h *Hub) addMember(c *Conn, name string, rule *Rule, held bool) *channel {
	for {
		h.mu.RLock()
		ch := h.channels[name]
		h.mu.RUnlock()
		if ch == nil {
			h.mu.Lock()
			if ch = h.channels[name]; ch == nil {
				ch = newChannel(name, rule)
				h.channels[name] = ch
			}
			h.mu.Unlock()
		}
		if ch.add(c, held) {
			return ch
		}
		// It emptied and died between the lookup and add; its removal from
		// the map is under way.
	}
}

func (h *Hub) removeMember(c *Conn, ch *channel) {
	if !ch.remove(c) {
		return
	}
	h.mu.Lock()
	if h.channels[ch.name] == ch {
		delete(h.channels, ch.name)
	}
	h.mu.Unlock()
}

// indexUser and unindexUser keep the index of named users; callers hold
// h.mu. A user has few connections, so a slice beats a set. Anonymous
// users (anon-<conn>) are not indexed: their name holds their conn id.
func (h *Hub) indexUser(c *Conn, user string) {
	h.users[user] = append(h.users[user], c)
}

func (h *Hub) unindexUser(c *Conn, user string) {
	conns := h.users[user]
	for i, x := range conns {
		if x == c {
			last := len(conns) - 1
			conns[i] = conns[last]
			conns[last] = nil
			conns = conns[:last]
			break
		}
	}
	if len(conns) == 0 {
		delete(h.users, user)
	} else {
		h.users[user] = conns
	}
}

// anonymous returns the unnamed connection whose user is name
// (anon-<conn>), or nil; callers hold h.mu.
func (h *Hub) anonymous(name string) *Conn {
	id, ok := strings.CutPrefix(name, anonPrefix)
	if !ok {
		return nil
	}
	c := h.conns[id]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userSet {
		return nil
	}
	return c
}

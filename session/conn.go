package session

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one client connection on this node.
type Conn struct {
	hub    *Hub
	id     string
	remote netip.Addr
	out    outbox
	in     inbox
	chats  atomic.Uint64 // chats published durably: each one's message id

	mu       sync.Mutex
	user     string      // guarded by mu (and hub.mu for the user index)
	userSet  bool        // guarded by mu; user came from the query or a join, not anon-<conn>
	verified bool        // user came from a token or an auth hook: a join cannot name another
	claims   []Pattern   // guarded by mu; the token's channels claim (join = "claim")
	channels []*channel  // guarded by mu; a slice: most connections join few
	gone     bool        // guarded by mu; disconnected, joins are refused
	bucket   *bucket     // guarded by mu; the rate bucket of its user or IP
	requests *requests   // guarded by mu; made by the first request
	expiry   *time.Timer // guarded by mu; closes it with 4003 when its token expires

	// Read-loop state: only the connection's worker touches it.
	strikes int
}

// requests are a connection's custom frames waiting for a backend's
// reply: at most Config.MaxRequests, all cancelled when it disconnects.
type requests struct {
	ctx     context.Context
	cancel  context.CancelFunc
	pending int // guarded by Conn.mu
}

// ID is the connection's id, unique in the cluster and a valid subject token.
func (c *Conn) ID() string { return c.id }

// User is the connection's user name.
func (c *Conn) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Remote is the client address the gateway saw (after trusted proxies).
func (c *Conn) Remote() netip.Addr { return c.remote }

// Send queues payload, a JSON object, for this connection as one text
// frame. It reports false if the connection is closed or too far behind.
func (c *Conn) Send(payload []byte) bool {
	return c.out.send(textFrame(payload), 1)
}

// Close closes the connection with d once what is queued has been written.
func (c *Conn) Close(d Disconnect) {
	c.out.close(d)
}

// Channels returns the channels the connection is a member of.
func (c *Conn) Channels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.channels))
	for _, ch := range c.channels {
		names = append(names, ch.name)
	}
	return names
}

// channel returns c's membership of name, or nil; callers hold c.mu.
func (c *Conn) channel(name string) *channel {
	for _, ch := range c.channels {
		if ch.name == name {
			return ch
		}
	}
	return nil
}

// dropChannel ends c's membership of ch; callers hold c.mu.
func (c *Conn) dropChannel(ch *channel) {
	for i, x := range c.channels {
		if x == ch {
			last := len(c.channels) - 1
			c.channels[i] = c.channels[last]
			c.channels[last] = nil
			c.channels = c.channels[:last]
			return
		}
	}
}

// expireAt closes c with 4003 at exp + leeway, instead of when an earlier
// call said; a zero exp never. Callers hold c.mu. A timer that has fired
// already has begun the close: a refresh that comes that late is too late.
func (c *Conn) expireAt(exp time.Time, leeway time.Duration) {
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	if exp.IsZero() || c.gone {
		return
	}
	c.expiry = time.AfterFunc(time.Until(exp.Add(leeway)), func() { c.Close(DisconnectTokenExpired) })
}

// anonymous reports whether c has no user of its own (anon-<conn>).
func (c *Conn) anonymous() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.userSet
}

// limitKey names c's rate bucket: its user, or its IP while anonymous;
// callers hold c.mu.
func (c *Conn) limitKey() bucketKey {
	if c.userSet {
		return bucketKey{user: c.user}
	}
	return bucketKey{ip: ipKey(c.remote)}
}

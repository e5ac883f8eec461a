// Package session is the home of pushgrid's client protocol (PROTOCOL.md §1):
// frame decoding and validation, names, error and close codes, and the state
// of every connection on this node — its identity, its channels, its limits
// and its bounded outgoing queue.
//
// It owns the local side of fanout: a Hub keeps the members of each channel
// on this node and hands each message published to a channel to all of them,
// encoded once per message, never per member (see Hub.DeliverChannel). It
// does not own the network: bytes leave through a Transport that the gateway
// provides, and messages cross nodes through a Bus and a Backend that the
// broker provides. session declares those interfaces and imports neither.
//
// A Go program that embeds pushgrid adds behaviour through a Handler
// (OnConnect, OnMessage, OnDisconnect); embed NopHandler and override what
// you need.
//
// The files, by job: hub.go (the Hub, Connect, Shutdown), handlers.go (what
// each client frame does), members.go (channel membership and the user
// index, disconnecting), delivery.go (what the bus brings, to local
// connections), events.go (events for backends), channel.go (a channel's
// members and dispatcher), outbox.go and inbox.go (a connection's queues),
// limit.go (rate buckets), decode.go and frame.go (frames in and out).
//
// Lifecycle: New starts nothing; connections come through Connect and end
// with ReadEnded (their read loop ended); Shutdown drains and closes them
// all and stops the hub, the one way to.
//
// Concurrency: every exported method of Hub and Conn is safe to call from
// several goroutines, except that a connection's frames must arrive in
// order from one goroutine (its read loop): Hub.Enqueue hands each to a
// worker (one of the hub's pool, or a goroutine of its own when the pool is
// busy) that handles that connection's frames in order while it has any, so
// an idle connection costs one small read-loop stack; Hub.Receive handles a
// frame at once on the caller's goroutine.
//
// Lock order, outermost first; a goroutine holding one may take those
// after it, never one before:
//
//	Hub.mu → Conn.mu → limiter.mu → bucket.mu
//	Hub.mu (read) → outbox.mu → the transport's own lock (DeliverUser, DeliverAll)
//	channel.mu (read) → outbox.mu → the transport's own lock (a channel's dispatcher)
//
//	channel.mu (write) → channel.qmu (a joiner's release)
//
// Otherwise channel.qmu and inbox.mu are taken alone. No callback into a Handler, a
// Bus or a Backend runs under any of these locks.
package session

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
// Concurrency: every exported method of Hub and Conn is safe to call from
// several goroutines, except that a connection's frames must arrive in
// order from one goroutine (its read loop): Hub.Enqueue hands each to a
// worker (one of the hub's pool, or a goroutine of its own when the pool is
// busy) that handles that connection's frames in order while it has any, so
// an idle connection costs one small read-loop stack; Hub.Receive handles a
// frame at once on the caller's goroutine. Hub.Close stops the pool.
package session

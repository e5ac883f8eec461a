package broker

import (
	"context"

	"github.com/nats-io/nats.go"
)

// The relay carries what one node asks of another on behalf of a client
// whose session the other holds (a Socket.IO session's polls, or its
// WebSocket on a node that is not its owner): requests that wait for the
// owner's answer, and messages in order, on <prefix>.fwd.<node>. The
// subject is the nodes' own: backends may neither publish nor subscribe
// to it (see Subjects.backendPublish).

// Bounds of what may wait for the relay handler.
const (
	relayPendingMsgs  = 1 << 20
	relayPendingBytes = 256 << 20
)

// Relay is the relay subject of node.
func (s Subjects) Relay(node string) string { return s.Prefix + ".fwd." + node }

// RelayRequest sends data to node's relay handler and waits, until ctx
// ends, for its answer; ErrNoResponders when no such node is up.
func (b *Broker) RelayRequest(ctx context.Context, node string, data []byte) ([]byte, error) {
	if b.nc == nil {
		return nil, ErrNotStarted
	}
	return b.request(ctx, &nats.Msg{Subject: b.subj.Relay(node), Data: data})
}

// RelayPublish sends data to node's relay handler, with no answer. Messages
// from this node to one node arrive in the order they were sent.
func (b *Broker) RelayPublish(node string, data []byte) error {
	return b.publish(b.subj.Relay(node), data)
}

// HandleRelay hands what arrives on this node's relay subject to f, one
// message at a time, in order, on one goroutine: f must not wait. reply is
// nil for a message that wants no answer. Call it after Start, once.
func (b *Broker) HandleRelay(f func(data []byte, reply func([]byte) error)) error {
	if b.nc == nil {
		return ErrNotStarted
	}
	sub, err := b.nc.Subscribe(b.subj.Relay(b.cfg.Node), func(m *nats.Msg) {
		var reply func([]byte) error
		if m.Reply != "" {
			reply = m.Respond
		}
		f(m.Data, reply)
	})
	if err != nil {
		return err
	}
	// Room for bursts of piped sockets' frames well past the NATS
	// defaults, but bounded: past it NATS drops (and reports) messages
	// rather than let a flood through one pipe grow the node's memory
	// without limit.
	if err := sub.SetPendingLimits(relayPendingMsgs, relayPendingBytes); err != nil {
		return err
	}
	b.mu.Lock()
	b.fixed = append(b.fixed, sub)
	b.mu.Unlock()
	return b.nc.Flush()
}

package broker

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Channel subscriptions and their delivery.
//
// A node may hold a NATS subscription for each of hundreds of thousands of
// channels, and nats.go runs one goroutine per callback subscription (its
// waitForMsgs): about 4 KB per channel, most of it stack. So every channel
// subscription is a ChanSubscribe onto one shared intake channel, and one
// pump goroutine hands each message to Receiver.DeliverChannel, in the
// order NATS delivered them, so every channel's messages stay in order.
//
// The Receiver must not block (the hub only appends the message to the
// channel's batch; its own dispatchers do the fanout): the pump serves
// every channel. nats.go's reader hands each message to intake without
// waiting, and DROPS it when intake is full (reporting a slow consumer to
// the error handler, which logs it). The pump does less per message than
// the reader that fills intake (which parses, allocates and copies every
// message), so intake fills only if the pump gets no CPU while the reader
// parses intakeLen messages, dozens of full socket reads: not normal
// operation, and it shows as "slow consumer" in the log.
const intakeLen = 1 << 16 // 512 KiB of pointers per node

// interest is one channel's subscription and how many local members want
// it; guarded by Broker.mu. There is one per channel of the node.
type interest struct {
	sub     *nats.Subscription
	members int
}

// Subscribe counts one more local member of channel; the first one
// subscribes the node. It returns once the subscription is on the
// connection, so a later Publish on this broker sees it.
func (b *Broker) Subscribe(channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nc == nil || b.stopping {
		return ErrClosed
	}
	if in := b.chans[channel]; in != nil {
		in.members++
		return nil
	}
	// The subject is built once and the channel name kept as its tail: the
	// caller's string may be a slice of a whole client frame.
	subject := b.subj.Channel(channel)
	sub, err := b.nc.ChanSubscribe(subject, b.intake)
	if err != nil {
		return fmt.Errorf("subscribe channel %q: %w", channel, err)
	}
	b.chans[subject[len(subject)-len(channel):]] = &interest{sub: sub, members: 1}
	return nil
}

// Unsubscribe counts one local member of channel less; the last one
// unsubscribes the node.
func (b *Broker) Unsubscribe(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in := b.chans[channel]
	if in == nil {
		return
	}
	in.members--
	if in.members > 0 {
		return
	}
	delete(b.chans, channel)
	if err := in.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Error("unsubscribe", "channel", channel, "err", err)
	}
}

// Subscriptions returns how many channels this node is subscribed to.
func (b *Broker) Subscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.chans)
}

// startDelivery starts the pump; closing b.stop ends it, and what is still
// in intake is dropped.
func (b *Broker) startDelivery() {
	b.wg.Add(1)
	go b.pump()
}

// pump hands each channel message to the Receiver.
func (b *Broker) pump() {
	defer b.wg.Done()
	prefix := len(b.subj.chanPrefix())
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.intake:
			// A message of a subscription since dropped is dropped too, as
			// nats.go would have with a subscription of its own: the
			// channel may have new members by now, who joined after it
			// was published.
			if m.Sub.IsValid() {
				b.recv.DeliverChannel(m.Sub.Subject[prefix:], m.Data)
			}
		}
	}
}

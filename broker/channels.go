package broker

import (
	"errors"
	"fmt"
	"strconv"

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
	// synced, for a history channel, is closed once the other nodes'
	// servers have the subscription (sync.go); later members wait for it.
	synced chan struct{}
}

// Subscribe counts one more local member of channel; the first one
// subscribes the node. It returns once the subscription is on the
// connection, so a later Publish on this broker sees it, and, for a
// history channel, once the other nodes' servers have it too (sync.go),
// so that its store's republishing reaches this node from the next
// message it stores.
func (b *Broker) Subscribe(channel string) error {
	b.mu.Lock()
	if b.nc == nil || b.stopping {
		b.mu.Unlock()
		return ErrClosed
	}
	if in := b.chans[channel]; in != nil {
		in.members++
		synced := in.synced
		b.mu.Unlock()
		if synced != nil {
			<-synced
		}
		return nil
	}
	// The subject is built once and the channel name kept as its tail: the
	// caller's string may be a slice of a whole client frame. A history
	// channel's members get what its store republishes (Config.Stored).
	subject := b.subj.Channel(channel)
	stored := b.cfg.Stored != nil && b.cfg.Stored(channel)
	if stored {
		subject = b.subj.Live(channel)
	}
	sub, err := b.nc.ChanSubscribe(subject, b.intake)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("subscribe channel %q: %w", channel, err)
	}
	in := &interest{sub: sub, members: 1}
	if stored {
		in.synced = make(chan struct{})
	}
	b.chans[subject[len(subject)-len(channel):]] = in
	b.mu.Unlock()
	if stored {
		b.syncInterest()
		close(in.synced)
	}
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
	chanPrefix, livePrefix := b.subj.chanPrefix(), b.subj.livePrefix()
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.intake:
			// A message of a subscription since dropped is dropped too, as
			// nats.go would have with a subscription of its own: the
			// channel may have new members by now, who joined after it
			// was published.
			if !m.Sub.IsValid() {
				continue
			}
			subject := m.Sub.Subject
			if len(subject) > len(livePrefix) && subject[:len(livePrefix)] == livePrefix {
				seq, prev, ok := storedSeq(m)
				if !ok {
					b.log.Warn("a republished message without its sequence", "subject", m.Subject)
					continue
				}
				b.recv.DeliverStored(subject[len(livePrefix):], seq, prev, m.Data)
				continue
			}
			b.recv.DeliverChannel(subject[len(chanPrefix):], m.Data)
		}
	}
}

// storedSeq reads the sequence of a message a stream republished, and
// that of the message stored before it on the same subject.
func storedSeq(m *nats.Msg) (seq, prev uint64, ok bool) {
	if m.Header == nil {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil || seq == 0 {
		return 0, 0, false
	}
	prev, _ = strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
	return seq, prev, true
}

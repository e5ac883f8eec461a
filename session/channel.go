package session

import (
	"sync"
	"time"
)

// maxChannelBacklog bounds the bytes of frames waiting for a channel's
// dispatcher. A backlog grows only while the node cannot fan a channel's
// messages out as fast as they come (its CPU is spent): past the bound the
// channel's new messages are dropped and counted (Stats.Dropped), rather
// than the node's memory growing without limit or the bus, which delivers
// every channel from one goroutine, waiting for this one.
const maxChannelBacklog = 64 << 20

// batchShare is the part of a connection's queue bound one batch may fill
// at most: a member whose socket is full for a moment queues a whole batch,
// so a batch near the bound would cut a member that is only briefly behind.
const batchShare = 4

// channel is one channel's members on this node and its dispatcher.
//
// Messages arrive one by one from the bus and are appended, already framed,
// to the newest batch. One dispatcher goroutine at a time takes the waiting
// batches and hands each, a single buffer, to every member: while it is
// busy, new messages gather into the next batch, so under load each member
// receives many frames in one write, and the frames are encoded once per
// node whatever the number of members. A batch holds at most a quarter of a
// connection's queue bound (see batchShare).
//
// A node may hold hundreds of thousands of channels, most of them quiet, so
// a channel is kept small: the dispatch state exists only while messages
// are on their way, and a small channel has no index.
type channel struct {
	name string
	rule *Rule // the rule that applies to it, found once

	mu      sync.RWMutex // guards members, index, dead; held for reading during a fanout
	members []*Conn
	// index finds a member's place in members once there are more than
	// indexAt; a small channel, the most common kind, has none, since a
	// map costs more than the channel itself.
	index map[*Conn]int
	dead  bool // removed from the hub; a joiner must look again
	// recovering holds back the batches of members that joined a history
	// channel and whose replay has not gone out yet (see joinStored), and
	// then, until the channel's messages pass what the replay ended with,
	// keeps them from getting a stored message twice; nil when no member
	// is recovering, which is the fanout's fast path.
	recovering map[*Conn]*heldBatches

	qmu     sync.Mutex // guards out, lastSeq, liveFrom, baseline and refilling
	out     *fanout    // while messages are on their way; nil when none is
	lastSeq uint64     // a history channel's newest stored message delivered
	// liveFrom, once lastSeq is set, is the seq after which every stored
	// message of the channel reaches its members here, live or refilled:
	// the first one that came live followed it, a refill began there, or
	// a replay ended there. A joiner whose replay ended before it lacks
	// what lies between: the node's subscription to the channel is new,
	// and a message the stream republished before the subscription's
	// interest reached it never comes (release reports the gap).
	liveFrom uint64
	// baseline, while nothing has come live (lastSeq 0) and once based,
	// is the lowest seq a released joiner's replay ended with (0 for a
	// join that found nothing stored): the first message that comes is
	// checked against it for a gap.
	baseline uint64
	based    bool
	// refilling, not nil while messages the live feed missed are read from
	// the store, holds the stored messages that came meanwhile (refill).
	refilling []storedMsg
}

// heldBatches are the batches a recovering member missed, in order, until
// release; from then on floor is the seq its replay ended with, and the
// member gets only frames above it, until one passes (then done: the
// channel's seqs only grow, and the entry goes).
type heldBatches struct {
	batches  []batch
	released bool
	floor    uint64
	done     bool // written by the dispatcher, under ch.mu read-locked: it alone reads it then
}

// fanout is a channel's messages on their way to its members; its fields
// are guarded by the channel's qmu.
type fanout struct {
	batches []batch // waiting for the dispatcher, oldest first
	queued  int     // bytes in batches
	spare   []batch // the dispatcher's emptied slice, for the next round
	// wake, when not nil, is the dispatcher waiting to gather
	// announcements; any other message ends the wait. Set before the
	// dispatcher starts, never changed.
	wake chan struct{}
}

// indexAt is the member count past which a channel keeps an index.
const indexAt = 16

// batch is a run of encoded frames every member gets in one send; on a
// history channel seqs holds each frame's seq.
type batch struct {
	buf    []byte
	frames int
	seqs   []uint64
}

func newChannel(name string, rule *Rule) *channel {
	return &channel{name: name, rule: rule}
}

// find returns c's place in members, or -1; callers hold ch.mu.
func (ch *channel) find(c *Conn) int {
	if ch.index != nil {
		if i, ok := ch.index[c]; ok {
			return i
		}
		return -1
	}
	for i, m := range ch.members {
		if m == c {
			return i
		}
	}
	return -1
}

// add makes c a member; it reports false if the channel is dead. A held
// member gets no batch until release.
func (ch *channel) add(c *Conn, held bool) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead {
		return false
	}
	if ch.find(c) >= 0 {
		return true
	}
	if held {
		if ch.recovering == nil {
			ch.recovering = make(map[*Conn]*heldBatches)
		}
		ch.recovering[c] = &heldBatches{}
	}
	ch.members = append(ch.members, c)
	switch {
	case ch.index != nil:
		ch.index[c] = len(ch.members) - 1
	case len(ch.members) > indexAt:
		ch.index = make(map[*Conn]int, 2*len(ch.members))
		for i, m := range ch.members {
			ch.index[m] = i
		}
	}
	return true
}

// remove drops c; it reports whether the channel is now empty, in which
// case it is dead and the caller removes it from the hub.
func (ch *channel) remove(c *Conn) (empty bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.unhold(c)
	if i := ch.find(c); i >= 0 {
		last := len(ch.members) - 1
		moved := ch.members[last]
		ch.members[i] = moved
		ch.members[last] = nil
		ch.members = ch.members[:last]
		if ch.index != nil {
			ch.index[moved] = i
			delete(ch.index, c)
		}
	}
	if len(ch.members) == 0 {
		ch.dead = true
		ch.index = nil
		return true
	}
	return false
}

func (ch *channel) size() int {
	ch.mu.RLock()
	defer ch.mu.RUnlock()
	return len(ch.members)
}

// Joins come one at a time and each is announced to every member: a
// channel of hundreds filling up would cost a write to every member, and a
// read in every client, per join. So an announcement that finds no
// dispatch under way in a channel of more than lingerAt local members
// waits for more messages (see announceLinger), and the members get them
// all in one write. Any other message ends the wait at once: only
// announcements are ever held.
const lingerAt = 64

// announceLinger is how long an announcement waits in a channel of n
// local members: 50 µs a member, from 10 ms to 100 ms. A round of writes
// costs the node some 10 µs a member, so the wait keeps what
// announcements cost to a fifth of the node's time at most, whatever the
// size of the channel or the pace of joins.
func announceLinger(n int) time.Duration {
	return min(max(time.Duration(n)*50*time.Microsecond, 10*time.Millisecond), 100*time.Millisecond)
}

// deliver queues payload, published to the channel, for every member of
// the hub's. It never waits, for a member or for the dispatcher. linger
// says payload is an announcement that may wait for company (see
// announceLinger); seq is a history channel's stored message's, else 0.
func (ch *channel) deliver(h *Hub, payload []byte, linger bool, seq uint64) {
	size := wsHeaderLen(len(payload)) + len(payload)
	cfg := &h.cfg
	maxFrames, maxBytes := max(cfg.QueueFrames/batchShare, 1), cfg.QueueBytes/batchShare
	ch.qmu.Lock()
	if ch.out != nil && ch.out.queued+size > maxChannelBacklog {
		ch.qmu.Unlock()
		h.dropped(ch.name)
		return
	}
	switch {
	case ch.out == nil:
		// No dispatcher runs: this message starts one.
		ch.out = &fanout{}
		if linger {
			ch.out.wake = make(chan struct{}, 1)
		}
		go ch.dispatch(h, ch.out)
	case !linger && ch.out.wake != nil:
		select {
		case ch.out.wake <- struct{}{}: // the dispatcher stops waiting
		default:
		}
	}
	out := ch.out
	last := len(out.batches) - 1
	if last < 0 || out.batches[last].frames >= maxFrames || len(out.batches[last].buf)+size > maxBytes {
		out.batches = append(out.batches, batch{buf: make([]byte, 0, 2*size)})
		last++
	}
	b := &out.batches[last]
	b.buf = appendFrame(b.buf, opText, payload)
	if seq != 0 || b.seqs != nil {
		for len(b.seqs) < b.frames {
			b.seqs = append(b.seqs, 0)
		}
		b.seqs = append(b.seqs, seq)
	}
	b.frames++
	out.queued += size
	ch.qmu.Unlock()
}

// dispatch hands out's batches to the members until none is left, then
// drops out.
func (ch *channel) dispatch(h *Hub, out *fanout) {
	if out.wake != nil {
		t := time.NewTimer(announceLinger(ch.size()))
		select {
		case <-t.C:
		case <-out.wake:
			t.Stop()
		}
	}
	for {
		ch.qmu.Lock()
		batches := out.batches
		if len(batches) == 0 {
			ch.out = nil
			ch.qmu.Unlock()
			return
		}
		// The buffers now belong to the members' outboxes, which may keep
		// them; the next message starts a new one.
		out.batches, out.queued = out.spare[:0], 0
		ch.qmu.Unlock()

		ch.mu.RLock()
		delivered, prune := 0, false
		for _, b := range batches {
			n := 0
			if ch.recovering == nil {
				for _, c := range ch.members {
					if c.out.send(b.buf, b.frames) {
						n++
					}
				}
			} else {
				for _, c := range ch.members {
					held := ch.recovering[c]
					switch {
					case held == nil || held.done:
						if c.out.send(b.buf, b.frames) {
							n++
						}
					case !held.released:
						// Appended under the read lock: only this
						// dispatcher appends, and release takes the
						// write lock.
						held.batches = append(held.batches, b)
					default:
						buf, frames, passed := b.above(held.floor)
						if frames > 0 && c.out.send(buf, frames) {
							n++
						}
						if passed {
							held.done, prune = true, true
						}
					}
				}
			}
			delivered += n * b.frames
		}
		ch.mu.RUnlock()
		if prune {
			ch.pruneRecovered()
		}
		h.stats.delivered.Add(uint64(delivered))
		clear(batches)
		ch.qmu.Lock()
		out.spare = batches
		ch.qmu.Unlock()
	}
}

// above returns b's frames whose seq is above floor, and whether any was
// (after which no frame of the channel is at or below it: its seqs only
// grow). Frames without a seq count as above.
func (b *batch) above(floor uint64) (buf []byte, frames int, passed bool) {
	switch {
	case len(b.seqs) == 0 || b.seqs[0] > floor:
		return b.buf, b.frames, true // all of it, no copy
	case b.seqs[len(b.seqs)-1] <= floor:
		return nil, 0, false
	}
	i := 0
	for p := b.buf; len(p) > 0; i++ {
		h, size := wsFrameHeader(p)
		if h == 0 || h+size > len(p) {
			break // not a whole frame: cannot happen with appendFrame's
		}
		if i >= len(b.seqs) || b.seqs[i] > floor {
			buf = append(buf, p[:h+size]...)
			frames++
		}
		p = p[h+size:]
	}
	return buf, frames, frames > 0
}

// pruneRecovered forgets the recovering members that are done.
func (ch *channel) pruneRecovered() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for c, held := range ch.recovering {
		if held.done {
			delete(ch.recovering, c)
		}
	}
	if len(ch.recovering) == 0 {
		ch.recovering = nil
	}
}

// unhold stops holding c's batches; callers hold ch.mu for writing.
func (ch *channel) unhold(c *Conn) *heldBatches {
	held := ch.recovering[c]
	if held != nil {
		delete(ch.recovering, c)
		if len(ch.recovering) == 0 {
			ch.recovering = nil
		}
	}
	return held
}

// hold holds c's batches back from now on, as for a member that joins a
// history channel (add with held); it reports false when c is no member.
func (ch *channel) hold(c *Conn) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.find(c) < 0 {
		return false
	}
	if ch.recovering == nil {
		ch.recovering = make(map[*Conn]*heldBatches)
	}
	ch.recovering[c] = &heldBatches{}
	return true
}

// release ends the hold on c: frames (n whole frames: the join's answer
// and its replay) go to it first, then the frames of the batches it
// missed meanwhile whose seq is above last, what the replay ended with;
// from then on it gets every batch, but for frames at or below last still
// on their way (the bus's, a refill's), which it got in the replay.
//
// When the channel's messages reach this node only from a seq above last
// (liveFrom), c would miss those between: release then sends nothing,
// keeps the hold and returns liveFrom; the caller reads the messages up
// to it from the store, adds them to frames and calls release again.
func (ch *channel) release(c *Conn, frames []byte, n int, last uint64) (gapTo uint64) {
	return ch.releaseHeld(c, frames, n, last, true)
}

// giveBack ends the hold on c after a failed rejoin: c, a member all
// along, gets every batch held meanwhile, and the channel's marks stay.
func (ch *channel) giveBack(c *Conn) { ch.releaseHeld(c, nil, 0, 0, false) }

func (ch *channel) releaseHeld(c *Conn, frames []byte, n int, last uint64, join bool) (gapTo uint64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	held := ch.recovering[c]
	if held == nil || held.released {
		return 0 // c left meanwhile
	}
	if join {
		if gapTo = ch.markJoined(last); gapTo != 0 {
			return gapTo
		}
	}
	passed := false
	for _, b := range held.batches {
		buf, k, p := b.above(last)
		frames = append(frames, buf...)
		n += k
		passed = passed || p
	}
	c.out.send(frames, n)
	if passed || last == 0 {
		ch.unhold(c)
	} else {
		*held = heldBatches{released: true, floor: last}
	}
	return 0
}

// markJoined checks, for a joiner whose replay ended at last, that the
// channel's messages after last reach it here, and moves the channel's
// marks for it; it returns the seq up to which the joiner lacks messages
// (liveFrom), or 0. Checked and moved under qmu at once: the first live
// message (advance) either came before and set liveFrom, or comes after
// and finds lastSeq or the baseline covering the joiner. Callers hold
// ch.mu for writing, so nothing reaches the joiner meanwhile.
func (ch *channel) markJoined(last uint64) (gapTo uint64) {
	ch.qmu.Lock()
	defer ch.qmu.Unlock()
	if ch.lastSeq != 0 && last < ch.liveFrom {
		return ch.liveFrom
	}
	switch {
	case len(ch.members) == 1 && ch.lastSeq < last:
		// The only member, and the channel had delivered nothing it
		// lacks: a gap after last can now be seen (advance); messages at
		// or below it that come later are dropped, so a later joiner
		// lacks them unless its replay reaches last.
		ch.lastSeq = last
		ch.liveFrom = max(ch.liveFrom, last)
	case ch.lastSeq == 0 && (!ch.based || last < ch.baseline):
		ch.baseline, ch.based = last, true
	}
	return 0
}

// advance records seq as the channel's newest stored message delivered: it
// reports false for one at or below the last (a duplicate), and, when
// prev, the message stored before seq, is above the last, that one or
// more were missed: the first of them, missedFrom (0: none was).
func (ch *channel) advance(seq, prev uint64) (missedFrom uint64, ok bool) {
	ch.qmu.Lock()
	defer ch.qmu.Unlock()
	if seq <= ch.lastSeq {
		return 0, false
	}
	switch {
	case ch.lastSeq != 0:
		if prev > ch.lastSeq {
			missedFrom = ch.lastSeq + 1
		}
	case ch.based && prev > ch.baseline:
		// The first to come, after a joiner's replay that ended before
		// the message stored ahead of it: refilled from the replay's end.
		missedFrom, ch.liveFrom = ch.baseline+1, ch.baseline
	default:
		ch.liveFrom = prev
	}
	ch.lastSeq = seq
	return missedFrom, true
}

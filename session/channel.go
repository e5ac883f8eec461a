package session

import "sync"

// maxChannelBacklog bounds the bytes of frames waiting for a channel's
// dispatcher. Past it, DeliverChannel waits, which pushes back into the
// bus's own bounded queue instead of growing without limit here.
const maxChannelBacklog = 8 << 20

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
type channel struct {
	name string
	hub  *Hub

	mu      sync.RWMutex // guards members, index, dead; held for reading during a fanout
	members []*Conn
	index   map[*Conn]int
	dead    bool // removed from the hub; a joiner must look again

	qmu     sync.Mutex // guards batches, queued, running
	room    sync.Cond  // on qmu: signalled when the batches are taken
	batches []batch    // waiting for the dispatcher, oldest first
	queued  int        // bytes in batches
	running bool
}

// batch is a run of encoded frames every member gets in one send.
type batch struct {
	buf    []byte
	frames int
}

func newChannel(h *Hub, name string) *channel {
	ch := &channel{name: name, hub: h, index: make(map[*Conn]int)}
	ch.room.L = &ch.qmu
	return ch
}

// add makes c a member; it reports false if the channel is dead.
func (ch *channel) add(c *Conn) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.dead {
		return false
	}
	if _, ok := ch.index[c]; !ok {
		ch.index[c] = len(ch.members)
		ch.members = append(ch.members, c)
	}
	return true
}

// remove drops c; it reports whether the channel is now empty, in which
// case it is dead and the caller removes it from the hub.
func (ch *channel) remove(c *Conn) (empty bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	i, ok := ch.index[c]
	if ok {
		last := len(ch.members) - 1
		moved := ch.members[last]
		ch.members[i] = moved
		ch.index[moved] = i
		ch.members[last] = nil
		ch.members = ch.members[:last]
		delete(ch.index, c)
	}
	if len(ch.members) == 0 {
		ch.dead = true
		return true
	}
	return false
}

func (ch *channel) size() int {
	ch.mu.RLock()
	defer ch.mu.RUnlock()
	return len(ch.members)
}

// deliver queues payload for every member. It never waits for a member.
func (ch *channel) deliver(payload []byte) {
	size := wsHeaderLen(len(payload)) + len(payload)
	cfg := &ch.hub.cfg
	maxFrames, maxBytes := max(cfg.QueueFrames/batchShare, 1), cfg.QueueBytes/batchShare
	ch.qmu.Lock()
	for ch.queued > maxChannelBacklog {
		ch.room.Wait()
	}
	last := len(ch.batches) - 1
	if last < 0 || ch.batches[last].frames >= maxFrames || len(ch.batches[last].buf)+size > maxBytes {
		ch.batches = append(ch.batches, batch{buf: make([]byte, 0, 2*size)})
		last++
	}
	b := &ch.batches[last]
	b.buf = appendFrame(b.buf, opText, payload)
	b.frames++
	ch.queued += size
	if !ch.running {
		ch.running = true
		go ch.dispatch()
	}
	ch.qmu.Unlock()
}

// dispatch hands batches to the members until none is left.
func (ch *channel) dispatch() {
	var spare []batch
	for {
		ch.qmu.Lock()
		batches := ch.batches
		if len(batches) == 0 {
			ch.running = false
			ch.qmu.Unlock()
			return
		}
		// The buffers now belong to the members' outboxes, which may keep
		// them; the next message starts a new one.
		ch.batches, ch.queued = spare[:0], 0
		ch.room.Broadcast()
		ch.qmu.Unlock()

		ch.mu.RLock()
		delivered := 0
		for _, b := range batches {
			n := 0
			for _, c := range ch.members {
				if c.out.send(b.buf, b.frames) {
					n++
				}
			}
			delivered += n * b.frames
		}
		ch.mu.RUnlock()
		ch.hub.stats.delivered.Add(uint64(delivered))
		clear(batches)
		spare = batches
	}
}

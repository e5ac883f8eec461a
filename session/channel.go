package session

import "sync"

// maxChannelBacklog bounds the bytes of frames waiting for a channel's
// dispatcher. Past it, DeliverChannel waits, which pushes back into the
// bus's own bounded queue instead of growing without limit here.
const maxChannelBacklog = 8 << 20

// channel is one channel's members on this node and its dispatcher.
//
// Messages arrive one by one from the bus and are appended, already framed,
// to backlog. One dispatcher goroutine at a time takes the whole backlog and
// hands that single buffer to every member: while it is busy, new messages
// gather into the next backlog, so under load each member receives many
// frames in one write, and the frames are encoded once per node whatever
// the number of members.
type channel struct {
	name string
	hub  *Hub

	mu      sync.RWMutex // guards members, index, dead; held for reading during a fanout
	members []*Conn
	index   map[*Conn]int
	dead    bool // removed from the hub; a joiner must look again

	qmu     sync.Mutex // guards backlog, frames, running
	room    sync.Cond  // on qmu: signalled when the backlog is taken
	backlog []byte
	frames  int
	running bool
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
	ch.qmu.Lock()
	for len(ch.backlog) > maxChannelBacklog {
		ch.room.Wait()
	}
	if ch.backlog == nil {
		ch.backlog = make([]byte, 0, 2*(wsHeaderLen(len(payload))+len(payload)))
	}
	ch.backlog = appendFrame(ch.backlog, opText, payload)
	ch.frames++
	if !ch.running {
		ch.running = true
		go ch.dispatch()
	}
	ch.qmu.Unlock()
}

// dispatch hands backlogs to the members until none is left.
func (ch *channel) dispatch() {
	for {
		ch.qmu.Lock()
		batch, frames := ch.backlog, ch.frames
		if len(batch) == 0 {
			ch.running = false
			ch.qmu.Unlock()
			return
		}
		// The batch now belongs to the members' outboxes, which may keep
		// it; the next message starts a new buffer.
		ch.backlog, ch.frames = nil, 0
		ch.room.Broadcast()
		ch.qmu.Unlock()

		ch.mu.RLock()
		n := 0
		for _, c := range ch.members {
			if c.out.send(batch, frames) {
				n++
			}
		}
		ch.mu.RUnlock()
		ch.hub.stats.delivered.Add(uint64(n * frames))
	}
}

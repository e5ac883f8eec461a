package socketio

import (
	"sync"
	"unsafe"
)

// The hub encodes a channel's messages once per node and hands every
// member the very same batch buffer (session/channel.go), which no one
// writes to while it is shared. Translating that batch for each Socket.IO
// member would undo this: the cost of one message would grow with the
// members again. So the translation of a batch is cached, keyed by the
// buffer itself (its first byte's address and its length), and every
// member but the first gets the translation, WebSocket frames included,
// as a member of /ws gets the batch: one shared buffer to write.
//
// An entry holds the batch, so its address cannot be freed and handed to
// another buffer while the entry may answer for it. Only translations
// that do not depend on the session are cached: the caller translates a
// batch that holds its session's ack marker itself (see
// engineSession.translation).
//
// The cache is one per process, not per Server: a key is an allocation,
// which no two hubs share.
var translations translationCache

const (
	// cacheShards (1<<cacheShardBits) spreads the channels being
	// dispatched at once over locks: the members of one batch all use the
	// shard of its address. On two cores one lock does as well
	// (BenchmarkTranslate/parallel); the shards are for nodes with many,
	// where every dispatcher would otherwise take the same lock for each
	// member.
	cacheShardBits = 3
	cacheShards    = 1 << cacheShardBits
	// cacheWays is the entries of a shard. A batch is needed again only
	// while its dispatcher hands it out, and a shard sees a few batches at
	// a time. A batch is at most a quarter of session.queue_bytes (1 MiB
	// by default), so after a burst the cache keeps at most
	// cacheShards*cacheWays such batches, and their translations, alive
	// until newer ones replace them.
	cacheWays = 4
)

// translation is a batch of native frames as Socket.IO packets. A cached
// one is shared by every session that gets the batch: read-only.
type translation struct {
	frames  []byte   // the packets as WebSocket text frames, for a session on a WebSocket
	packets [][]byte // each packet, a part of frames, for a polling session
}

type translationCache struct {
	shards [cacheShards]cacheShard
}

// cacheShard is a few entries, replaced in CLOCK order: an entry used
// since the hand last passed it is spared once, so the batch being handed
// out outlives buffers that only one session receives (a welcome, an
// answer).
type cacheShard struct {
	mu      sync.Mutex
	entries [cacheWays]cacheEntry // guarded by mu
	hand    int                   // guarded by mu; the next entry to consider replacing
	_       [64]byte              // keeps the shards' locks on their own cache lines
}

type cacheEntry struct {
	batch []byte // the hub's buffer; nil for a free entry
	tr    *translation
	used  bool // found since the hand last passed
}

// get returns the translation of batch for a session whose ack marker
// batch does not hold (or that has none yet).
func (c *translationCache) get(batch []byte) (*translation, error) {
	if len(batch) == 0 {
		return translateFrames(batch, nil)
	}
	s := c.shard(batch)
	if tr := s.lookup(batch); tr != nil {
		return tr, nil
	}
	// Translated outside the lock: another goroutine writing the same
	// batch at once (an outbox's writer) may translate it too, which
	// costs only the work.
	tr, err := translateFrames(batch, nil)
	if err != nil {
		return nil, err
	}
	s.add(batch, tr)
	return tr, nil
}

func (c *translationCache) shard(batch []byte) *cacheShard {
	// Fibonacci hashing of the address; its low bits are alignment.
	h := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(batch)))>>4) * 0x9e3779b97f4a7c15
	return &c.shards[h>>(64-cacheShardBits)]
}

func sameBuffer(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

func (s *cacheShard) lookup(batch []byte) *translation {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if e := &s.entries[i]; sameBuffer(e.batch, batch) {
			e.used = true
			return e.tr
		}
	}
	return nil
}

func (s *cacheShard) add(batch []byte, tr *translation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries {
		if sameBuffer(s.entries[i].batch, batch) {
			return
		}
	}
	for {
		e := &s.entries[s.hand]
		s.hand = (s.hand + 1) % cacheWays
		if e.used {
			e.used = false
			continue
		}
		*e = cacheEntry{batch: batch, tr: tr}
		return
	}
}

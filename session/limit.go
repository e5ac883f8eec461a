package session

import (
	"net/netip"
	"sync"
	"time"
)

// The rate limit of client frames (PROTOCOL.md §1) is a token bucket per
// user on this node, shared by all of that user's connections, or per
// client IP for anonymous connections. A bucket outlives its connections
// until it has refilled, so reconnecting does not refill it: one user or
// one anonymous IP gets the rate, however many times it reconnects.

// bucket is one token bucket. Its connections' frames are handled on
// different goroutines, hence its own lock.
type bucket struct {
	mu     sync.Mutex
	tokens float64       // guarded by mu
	last   time.Duration // guarded by mu; since the hub's epoch, 0 before the first frame

	refs   int  // guarded by limiter.mu: connections using the bucket
	queued bool // guarded by limiter.mu: it has an entry in limiter.idle
}

// take takes one token at now (time since the hub's epoch) and reports
// whether there was one.
func (b *bucket) take(now time.Duration, rate float64, burst int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refillLocked(now time.Duration, rate float64, burst int) {
	if b.last == 0 {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(b.tokens+(now-b.last).Seconds()*rate, float64(burst))
	}
	b.last = max(now, 1)
}

// full reports whether the bucket would be full at now: dropping it then
// changes nothing.
func (b *bucket) full(now time.Duration, rate float64, burst int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last == 0 || b.tokens+(now-b.last).Seconds()*rate >= float64(burst)
}

// bucketKey names a bucket: a user, or the IP of anonymous connections.
type bucketKey struct {
	user string
	ip   netip.Addr
}

// ipKey is the address that names an anonymous client's bucket: an IPv4
// address, or the /64 of an IPv6 address, the smallest network one IPv6
// client is routinely given (it could otherwise take a bucket per address
// of its network).
func ipKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// limiter keeps the buckets of a hub. A bucket no connection uses waits
// in idle until it has refilled, then it is dropped: the limiter holds a
// bucket per user or IP connected now or in the last burst/rate seconds.
type limiter struct {
	rate  float64
	burst int

	mu    sync.Mutex
	users map[string]*bucket     // guarded by mu
	ips   map[netip.Addr]*bucket // guarded by mu; of anonymous connections
	idle  []idleBucket           // guarded by mu; oldest first
}

type idleBucket struct {
	key bucketKey
	b   *bucket
	at  time.Duration
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: burst, users: make(map[string]*bucket), ips: make(map[netip.Addr]*bucket)}
}

// get returns the bucket kept for key, or nil; callers hold l.mu.
func (l *limiter) get(key bucketKey) *bucket {
	if key.user != "" {
		return l.users[key.user]
	}
	return l.ips[key.ip]
}

// set keeps b for key, or forgets key when b is nil; callers hold l.mu.
func (l *limiter) set(key bucketKey, b *bucket) {
	switch {
	case key.user != "" && b != nil:
		l.users[key.user] = b
	case key.user != "":
		delete(l.users, key.user)
	case b != nil:
		l.ips[key.ip] = b
	default:
		delete(l.ips, key.ip)
	}
}

// acquire returns the bucket of key for one more connection. A key with
// neither user nor valid IP gets a bucket of its own.
func (l *limiter) acquire(key bucketKey, now time.Duration) *bucket {
	if key.user == "" && !key.ip.IsValid() {
		return &bucket{refs: 1}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	b := l.get(key)
	if b == nil {
		b = &bucket{}
		l.set(key, b)
	}
	b.refs++
	return b
}

// release gives back a connection's use of the bucket of key.
func (l *limiter) release(key bucketKey, b *bucket, now time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b.refs--
	if b.refs == 0 && !b.queued && l.get(key) == b {
		b.queued = true
		l.idle = append(l.idle, idleBucket{key, b, now})
	}
	l.sweepLocked(now)
}

// sweepLocked drops the idle buckets that have refilled since they went
// idle; callers hold l.mu. It looks only at buckets idle for at least the
// refill time, so it costs what it drops.
func (l *limiter) sweepLocked(now time.Duration) {
	refill := time.Duration(float64(l.burst) / l.rate * float64(time.Second))
	n := 0
	for _, e := range l.idle {
		if now-e.at < refill {
			break
		}
		n++
		switch {
		case e.b.refs > 0 || l.get(e.key) != e.b:
			// In use again, or already replaced: a later release queues it anew.
			e.b.queued = false
		case e.b.full(now, l.rate, l.burst):
			e.b.queued = false
			l.set(e.key, nil)
		default:
			// Frames were taken after it went idle; look again later.
			l.idle = append(l.idle, idleBucket{e.key, e.b, now})
		}
	}
	clear(l.idle[:n])
	l.idle = l.idle[n:]
}

// size is the number of buckets kept, for tests.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users) + len(l.ips)
}

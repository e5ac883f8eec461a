package session

import (
	"context"
	"sync"
	"time"
)

// outbox is a connection's bounded outgoing queue. Frames arrive already
// encoded, often as a run of several frames in one shared buffer that every
// member of a channel receives unchanged; the outbox never copies or changes
// them.
//
// While the socket keeps up, send writes straight through with one
// non-blocking write and nothing is queued or started. Only when the socket
// is full does the outbox queue the rest and start one writer goroutine,
// which drains the queue with blocking writes and exits once it is empty. A
// queue that passes its bound in frames or bytes ends the connection with
// 4001; the caller never waits for the socket.
// queueBounds are the outgoing queue's bounds: past either, the client is
// closed with 4001.
type queueBounds struct{ frames, bytes int }

type outbox struct {
	t      Transport
	bounds *queueBounds // shared by every outbox of a hub
	owner  *Conn        // hears of the closes the outbox decides on its own: a slow consumer, a failed write

	mu      sync.Mutex
	pending [][]byte // guarded by mu; queued, not yet written; shared, read-only
	frames  int      // guarded by mu; frames queued or being written by the writer
	bytes   int      // guarded by mu; bytes queued or being written by the writer
	writing bool     // guarded by mu; a writer goroutine owns the socket
	// partial is set while pending[0] is the rest of a buffer whose head is
	// already on the socket: dropping it would cut a frame in half, so a
	// slow consumer's discard keeps it. Guarded by mu.
	partial bool
	// partialRest is how much of pending[0] is the rest of the frame that
	// is half on the socket, when partial; the discard keeps only that.
	partialRest int
	closing     *Disconnect
	closed      bool // guarded by mu; nothing more is accepted
}

// send queues p, which holds n whole frames. The outbox keeps p: the caller
// must not change it afterwards. It reports false if the outbox is closed or
// closes now.
func (o *outbox) send(p []byte, n int) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if !o.writing {
		w, err := o.t.TryWrite(p)
		if err != nil {
			o.closeLocked(DisconnectWriteFailed, false)
			o.mu.Unlock()
			o.owner.closedByServer(DisconnectWriteFailed)
			return false
		}
		if w == len(p) {
			o.mu.Unlock()
			return true
		}
		// The socket is full: the rest waits for the writer. The frame
		// count stays whole, a partly written frame still counts as one.
		o.writing = true
		go o.writer()
		if w > 0 {
			// Its head is on the socket: the rest of the frame it cut
			// must follow, even if the rest of p is over the bound.
			o.pending = append(o.pending, p[w:])
			o.partial = true
			o.partialRest = frameRest(p, w)
			o.frames += n
			o.bytes += len(p) - w
			if o.overBound(0, 0) {
				o.closeLocked(DisconnectSlowConsumer, true)
				o.mu.Unlock()
				o.owner.closedByServer(DisconnectSlowConsumer)
				return false
			}
			o.mu.Unlock()
			return true
		}
	}
	if o.overBound(n, len(p)) {
		o.closeLocked(DisconnectSlowConsumer, true)
		o.mu.Unlock()
		o.owner.closedByServer(DisconnectSlowConsumer)
		return false
	}
	o.pending = append(o.pending, p)
	o.frames += n
	o.bytes += len(p)
	o.mu.Unlock()
	return true
}

// overBound reports whether the queue, with n more frames of size bytes,
// passes its bound; callers hold o.mu.
func (o *outbox) overBound(n, size int) bool {
	return o.frames+n > o.bounds.frames || o.bytes+size > o.bounds.bytes
}

// isClosed reports whether the outbox accepts no more frames.
func (o *outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// close stops accepting frames; what is queued is still written, then the
// close frame. It reports false if the outbox was already closed.
func (o *outbox) close(d Disconnect) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.closeLocked(d, false)
	return true
}

// closeLocked marks the outbox closed and makes sure a writer will send the
// close frame. discard drops what is queued (a slow consumer's backlog).
func (o *outbox) closeLocked(d Disconnect, discard bool) {
	o.closed = true
	o.closing = &d
	if discard {
		if o.partial && o.partialRest > 0 {
			o.pending = append(o.pending[:0], o.pending[0][:o.partialRest])
		} else {
			o.pending = nil
		}
		o.partial = false
	}
	if !o.writing {
		o.writing = true
		go o.writer()
	}
}

// writer owns the socket while the queue is non-empty or a close is due.
func (o *outbox) writer() {
	var spare [][]byte
	for {
		o.mu.Lock()
		bufs := o.pending
		if len(bufs) == 0 {
			if o.closing != nil {
				d := *o.closing
				o.closing = nil
				o.mu.Unlock()
				_ = o.t.Close(d)
				return
			}
			o.writing = false
			o.mu.Unlock()
			return
		}
		frames, size := o.frames, 0
		for _, b := range bufs {
			size += len(b)
		}
		o.pending = spare[:0]
		o.partial = false
		o.mu.Unlock()

		err := o.t.Write(bufs)

		o.mu.Lock()
		o.frames -= frames
		o.bytes -= size
		if o.frames < 0 {
			o.frames = 0
		}
		if o.bytes < 0 {
			o.bytes = 0
		}
		clear(bufs)
		spare = bufs
		if err != nil && !o.closed {
			o.closeLocked(DisconnectWriteFailed, true)
			o.mu.Unlock()
			o.owner.closedByServer(DisconnectWriteFailed)
			continue
		}
		if err != nil {
			o.pending = nil
		}
		o.mu.Unlock()
	}
}

// abandon stops everything: the socket is gone, so nothing queued or due
// will be written.
func (o *outbox) abandon() {
	o.mu.Lock()
	o.closed = true
	o.closing = nil
	o.pending = nil
	o.mu.Unlock()
}

// awaitRoom waits until n more frames of size bytes fit in the queue with
// room to spare (half the bounds free), or the outbox closes, or ctx ends;
// it reports whether they fit. A replay (PROTOCOL.md §6) may be longer
// than the bounds: it goes out in parts, each when the client has read
// enough of the one before, rather than cutting the client off.
func (o *outbox) awaitRoom(ctx context.Context, n, size int) bool {
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		o.mu.Lock()
		closed := o.closed
		fits := o.frames == 0 || o.frames+n <= o.bounds.frames/2 && o.bytes+size <= o.bounds.bytes/2
		o.mu.Unlock()
		switch {
		case closed:
			return false
		case fits:
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

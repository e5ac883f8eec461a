package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushgrid/pushgrid/session"
)

// The frame reader sits between gws's read buffer and the socket. gws
// parses a frame header and at once takes a buffer of the length it
// announces, then waits for the payload: a header announcing 64 KiB and
// one byte more would pin 128 KiB for as long as the client likes. The
// reader follows the client's framing instead and hands gws a frame only
// once all of it has arrived. A frame still arriving is kept in a buffer
// that grows with the bytes received (an idle connection holds none) and
// is bounded in time: from its first byte, it has Config.FrameTimeout to
// finish (a fragmented message, from its first byte to its last fragment's
// last), or the connection is closed with 1008.
//
// A header gws refuses by itself (longer than the session's
// MaxMessageBytes, a control frame over 125 bytes or fragmented, unmasked,
// reserved bits set) is passed on at once, and so are the bytes after it,
// so that gws answers 1009 or 1002 as soon as it arrives.
//
// Frames that arrive whole in one read, as small frames do, are read
// straight into gws's buffer and cost no copy and no deadline; only a
// frame split across reads is copied once, and sets the read deadline when
// it starts and clears it when it ends (a runtime timer, no syscall).

// Frame reader constants.
const (
	opClose        = 0x8
	minFrameBuffer = 512                  // the first buffer of a frame still arriving
	frameGrace     = 5 * time.Millisecond // a last look at the socket once a frame's time is up
)

// Read hands gws the client's bytes, whole frames at a time.
//
// An idle connection's read goroutine waits in here, below gws's own
// frames, and its stack is 2 KiB with little room to spare: a few dozen
// bytes more in the frames it waits under, and every idle connection's
// stack is copied to 4 KiB. So the wait goes through RawConn, whose call
// chain is shallower than net.Conn.Read's, straight from this frame, which
// holds little; the rest of the work is in functions not inlined into it.
func (c *socketConn) Read(p []byte) (int, error) {
	for {
		if c.buf != nil || c.gotClose || len(p) == 0 {
			return c.readPending(p)
		}
		// Nothing pending: read straight into gws's buffer.
		var n int
		var err error
		if c.t != nil && c.t.raw != nil {
			r := readFor(p)
			n, err = r.done(c.t.raw.Read(r.call))
		} else {
			n, err = c.Conn.Read(p)
		}
		if k := c.arrived(p[:n]); k > 0 {
			return k, nil // an error comes again with the next read
		}
		if err != nil {
			if err = c.readFailed(err); err != nil {
				return 0, err
			}
		}
	}
}

// readSocket reads from the socket into p, which is not empty, as
// net.Conn.Read does.
func (c *socketConn) readSocket(p []byte) (int, error) {
	if c.t == nil || c.t.raw == nil {
		return c.Conn.Read(p)
	}
	r := readFor(p)
	return r.done(c.t.raw.Read(r.call))
}

// fdRead is one RawConn.Read callback with its arguments and results,
// pooled as fdWrite is: a read allocates nothing, and only a connection
// waiting in a read holds one (80 bytes, less than a stack would grow).
type fdRead struct {
	p    []byte
	n    int
	err  error
	call func(fd uintptr) bool // once
}

var fdReads = sync.Pool{New: func() any {
	r := new(fdRead)
	r.call = r.once
	return r
}}

// readFor takes a pooled fdRead for a read into p.
//
//go:noinline
func readFor(p []byte) *fdRead {
	r := fdReads.Get().(*fdRead)
	r.p = p
	return r
}

// done returns r to the pool and the read's results, given the error of
// RawConn.Read.
//
//go:noinline
func (r *fdRead) done(err error) (int, error) {
	n, rerr := r.n, r.err
	*r = fdRead{call: r.call} // p is gws's or the frame's: do not keep it alive
	fdReads.Put(r)
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// once makes one read(2); returning false makes RawConn wait until the
// socket is readable (or the read deadline passes) and call it again.
func (r *fdRead) once(fd uintptr) bool {
	n, err := unix.Read(int(fd), r.p)
	for err == unix.EINTR {
		n, err = unix.Read(int(fd), r.p)
	}
	if err == unix.EAGAIN {
		return false
	}
	r.n, r.err = max(n, 0), err
	return true
}

// arrived takes b, bytes just read with nothing pending: it keeps the
// start of a frame that has not fully arrived and returns how much of b
// may be handed on.
//
//go:noinline
func (c *socketConn) arrived(b []byte) int {
	k := c.scan(b)
	if rest := b[k:]; len(rest) > 0 && !c.gotClose {
		c.buf = append(make([]byte, 0, frameRoom(rest)), rest...)
	}
	c.timeFrames()
	return k
}

// readPending is Read while bytes are pending: whole frames to hand on,
// or the start of one still arriving, which it reads on behind. It also
// answers after the client's close frame and for an empty p.
//
//go:noinline
func (c *socketConn) readPending(p []byte) (int, error) {
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[:c.ready])
			c.ready -= n
			c.buf = c.buf[n:]
			if len(c.buf) == 0 {
				c.buf = nil // an idle connection holds no buffer
			}
			return n, nil
		}
		if c.gotClose {
			return 0, io.EOF // nothing may follow the client's close frame
		}
		if len(p) == 0 {
			return 0, nil
		}
		if len(c.buf) == cap(c.buf) {
			c.buf = append(make([]byte, 0, frameRoom(c.buf)), c.buf...)
		}
		n, err := c.readSocket(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		c.ready = c.scan(c.buf)
		if c.gotClose {
			c.buf = c.buf[:c.ready]
		}
		c.timeFrames()
		if c.ready > 0 {
			continue
		}
		if err != nil {
			if err = c.readFailed(err); err != nil {
				return 0, err
			}
		}
	}
}

// scan walks b, which starts where the last scan stopped, and returns how
// many of its bytes may be handed on: whole frames, and frames passed on
// unchecked. What follows them is the start of a frame still arriving,
// unless the client's close frame came, after which nothing counts.
func (c *socketConn) scan(b []byte) int {
	c.crossed = false
	n := 0
	for n < len(b) {
		if c.skip > 0 {
			k := min(c.skip, uint64(len(b)-n))
			c.skip -= k
			n += int(k)
			continue
		}
		h := b[n:]
		hl, size, ok := frameHead(h)
		if !ok {
			return n
		}
		if size > math.MaxInt64 {
			// gws reads the length into an int: negative, it passes the
			// size check and gws panics slicing a buffer with it, taking
			// the node down. The largest valid length is refused instead.
			binary.BigEndian.PutUint64(h[2:], math.MaxInt64)
			size = math.MaxInt64
		}
		b0 := h[0]
		op := b0 & 0x0f
		control := op&0x08 != 0
		if size > uint64(c.g.maxFrame) || h[1]&0x80 == 0 || b0&0x70 != 0 || (control && (size > 125 || b0&0x80 == 0)) {
			// gws refuses this frame by its header: on at once, the
			// payload too as it comes.
			n += hl
			c.skip = size
			c.crossed = true
			continue
		}
		if uint64(len(h)-hl) < size {
			return n
		}
		n += hl + int(size)
		switch {
		case op == opClose:
			c.gotClose = true
			c.end()
			return n
		case !control:
			c.fragmented = b0&0x80 == 0
		}
		if !c.fragmented {
			c.crossed = true
		}
	}
	return n
}

// frameHead parses the header at the start of b: its length and the
// payload's. ok is false while the header is not all there.
func frameHead(b []byte) (hl int, size uint64, ok bool) {
	if len(b) < 2 {
		return 0, 0, false
	}
	hl = 2
	if b[1]&0x80 != 0 {
		hl += 4 // the mask key
	}
	lc := b[1] & 0x7f
	switch lc {
	case 126:
		hl += 2
	case 127:
		hl += 8
	}
	if len(b) < hl {
		return hl, 0, false
	}
	switch lc {
	case 126:
		size = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		size = binary.BigEndian.Uint64(b[2:])
	default:
		size = uint64(lc)
	}
	return hl, size, true
}

// frameRoom is the capacity of a buffer for b, the start of a frame still
// arriving: twice what arrived, but no more than the frame, once its header
// tells its length.
func frameRoom(b []byte) int {
	n := max(2*len(b), minFrameBuffer)
	if hl, size, ok := frameHead(b); ok && uint64(n) > uint64(hl)+size {
		n = hl + int(size)
	}
	return max(n, len(b)+1)
}

// timeFrames keeps the read deadline on the message in progress: set when
// one starts, moved when one ends and another starts in the same read,
// cleared when none is in progress.
func (c *socketConn) timeFrames() {
	if c.expired {
		return
	}
	inMessage := !c.gotClose && (len(c.buf) > c.ready || c.fragmented)
	switch {
	case inMessage && (!c.timing || c.crossed):
		c.timing, c.graced = true, false
		c.setReadDeadline(time.Now().Add(c.g.cfg.FrameTimeout))
	case !inMessage && c.timing:
		c.timing = false
		c.setReadDeadline(time.Time{})
	}
}

// readFailed decides what a failed read means: nil to read on, or the
// error that ends the read loop.
func (c *socketConn) readFailed(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.end()
		return err
	}
	c.mu.Lock()
	if c.lingering.Load() {
		if !c.retried {
			// The deadline may have been the frame's, passing just as the
			// linger set its own: read again, under the linger's. (If it
			// was the linger's, the read fails at once.)
			c.retried = true
			c.mu.Unlock()
			return nil
		}
		c.ended = true
		c.mu.Unlock()
		return err
	}
	if !c.timing || c.expired {
		c.ended = true
		c.mu.Unlock()
		return err
	}
	if !c.graced {
		// A deadline that passed while the read loop was busy (the hub
		// made it wait for room) fails the read without looking at the
		// socket: look once more, briefly, before blaming the client.
		c.graced = true
		_ = c.Conn.SetReadDeadline(time.Now().Add(frameGrace))
		c.mu.Unlock()
		return nil
	}
	// The frame timeout. The close frame follows what is queued for the
	// client, then the linger sets its deadline; until then reading goes on
	// under a bound of its own.
	c.expired, c.timing = true, false
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.g.cfg.WriteTimeout + closeLinger))
	c.mu.Unlock()
	if c.t != nil && c.t.socket != nil {
		c.frameTimedOut()
	}
	return nil
}

// frameTimedOut closes, with 1008, the connection whose frame did not
// arrive in time.
func (c *socketConn) frameTimedOut() {
	d := session.DisconnectFrameTimeout
	switch ref := c.t.socket.Session().(type) {
	case *connRef:
		// Through the session: the close frame follows what is queued
		// for the client.
		if sess := ref.c; sess != nil {
			c.g.log.Debug("frame timeout", "conn", sess.ID(), "remote", c.RemoteAddr().String())
			sess.Close(d)
		}
	case *edgeRef:
		// The queue is the socket's owner's, out of reach: the close frame
		// goes at the next frame boundary, and the owner learns through
		// closed once the read loop ends.
		c.g.log.Debug("frame timeout", "remote", c.RemoteAddr().String())
		_ = c.t.socket.WriteClose(uint16(d.Code), []byte(d.Reason))
	}
}

// adopt takes over b, the bytes that a handshake reader read past the
// request head, so that they are framed like the rest: the reader never
// loses its place in the stream.
func (c *socketConn) adopt(b []byte) {
	if len(b) == 0 {
		return
	}
	c.buf = append(make([]byte, 0, frameRoom(b)), b...)
	c.ready = c.scan(c.buf)
	if c.gotClose {
		c.buf = c.buf[:c.ready]
	}
	c.timeFrames()
}

// buffered returns what br holds unread, valid until br is next used.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lxzan/gws"
	"golang.org/x/sys/unix"

	"github.com/pushgrid/pushgrid/session"
)

// connRef is the gws session storage of one connection: just the pointer to
// its session.Conn, instead of gws's default map.
type connRef struct{ c *session.Conn }

var _ gws.SessionStorage = (*connRef)(nil)

func (r *connRef) Len() int                                 { return 1 }
func (r *connRef) Load(string) (any, bool)                  { return r.c, r.c != nil }
func (r *connRef) Delete(string)                            {}
func (r *connRef) Store(string, any)                        {}
func (r *connRef) Range(f func(key string, value any) bool) { f("conn", r.c) }

func connOf(socket *gws.Conn) *session.Conn { return socket.Session().(*connRef).c }

// liveConn is the session connection whose frames socket brings, or nil
// if there is none (the hub refused it) or a close frame has gone to the
// client: while the socket lingers, its frames are read and discarded.
func liveConn(socket *gws.Conn) *session.Conn {
	if sc, ok := socket.NetConn().(*socketConn); ok && sc.lingering.Load() {
		return nil
	}
	return connOf(socket)
}

// events turns gws callbacks into hub calls. They all run on the
// connection's read goroutine.
type events struct {
	hub     *session.Hub
	wsConns *atomic.Int64 // Gateway.wsConns
}

var _ gws.Event = (*events)(nil)

func (e *events) OnOpen(*gws.Conn) {}
func (e *events) OnPong(s *gws.Conn, _ []byte) {
	if c := liveConn(s); c != nil {
		e.hub.Pong(c)
	}
}

func (e *events) OnPing(s *gws.Conn, p []byte) {
	if c := liveConn(s); c != nil {
		e.hub.Ping(c, p)
	}
}

// OnMessage hands the frame to the connection's own worker, so the read
// loop's stack stays small; the hub closes m when done with it.
func (e *events) OnMessage(s *gws.Conn, m *gws.Message) {
	c := liveConn(s)
	switch {
	case c == nil:
		_ = m.Close()
	case m.Opcode == gws.OpcodeBinary:
		_ = m.Close()
		e.hub.Binary(c)
	default:
		e.hub.Enqueue(c, m)
	}
}

// OnClose ends the session connection, then closes the socket: it is the
// one place that does, once gws has read the last it will.
func (e *events) OnClose(s *gws.Conn, err error) {
	if c := connOf(s); c != nil {
		e.hub.ReadEnded(c, err)
		e.wsConns.Add(-1)
	}
	if sc, ok := s.NetConn().(*socketConn); ok {
		sc.finish()
	} else {
		_ = s.NetConn().Close()
	}
}

// transport is session.Transport over a gws connection. Data frames come
// already framed from the session and go straight to the socket; gws's own
// writer is used only for the close frame.
//
// The session serializes every call (the first one is the welcome frame's
// TryWrite), so the handshake response is written ahead of it without a
// lock.
type transport struct {
	socket   *gws.Conn
	conn     net.Conn
	raw      syscall.RawConn // nil when the socket has none, or speaks TLS (then TryWrite writes nothing and the frame reader reads through conn)
	tls      bool            // conn is a *tls.Conn: Write joins small buffers (see writeJoined)
	timeout  time.Duration
	response []byte // the handshake response, not yet written; with room for a frame

	// boundary is held while the socket is inside a frame: from a TryWrite
	// that wrote part of its buffer until the writer has written the rest,
	// and during each Write. gws's own writes take it (see socketConn).
	boundary sync.Mutex
	midFrame bool // boundary is held across calls, by a partial TryWrite
	// finished is set, under boundary, once nothing more may be written: a
	// close frame is on the socket, or a write failed, possibly inside a
	// frame, after which a close frame would only corrupt the stream.
	finished bool
}

var _ session.Transport = (*transport)(nil)

func newTransport(socket *gws.Conn, conn net.Conn, response []byte, timeout time.Duration) *transport {
	t := &transport{socket: socket, conn: conn, timeout: timeout, response: response}
	if _, ok := conn.(*tls.Conn); ok {
		// Every byte on the socket must go through the TLS records: a raw
		// write would put plaintext on it, a raw read take ciphertext off.
		// tls.Conn has no write that cannot block, so every frame goes
		// through the session's writer.
		t.tls = true
		return t
	}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

// TryWrite makes one non-blocking write(2). Go's sockets are non-blocking;
// returning true from the callback stops RawConn from waiting for room.
// It never waits: while gws writes a close frame of its own, it writes
// nothing, and the session queues p for its writer. (The one exception is
// the handshake response, see tryWriteAfterResponse.) Without a RawConn
// (TLS) it writes only the first frame, with the response.
func (t *transport) TryWrite(p []byte) (n int, err error) {
	if !t.boundary.TryLock() {
		return 0, nil
	}
	if t.finished {
		t.boundary.Unlock()
		return 0, net.ErrClosed
	}
	if t.response != nil {
		n, err = t.tryWriteAfterResponse(p)
	} else {
		n, err = t.tryWrite(p)
	}
	if err == nil && n > 0 && n < len(p) {
		// The rest goes with the writer's next Write, which unlocks.
		t.midFrame = true
		return n, nil
	}
	if err != nil {
		t.finished = true
	}
	t.boundary.Unlock()
	return n, err
}

func (t *transport) tryWrite(p []byte) (int, error) {
	if t.raw == nil {
		return 0, nil
	}
	return writeOnce(t.raw, p)
}

// writeOnce makes one write(2) of p to raw's socket that never waits for
// room, and allocates nothing.
func writeOnce(raw syscall.RawConn, p []byte) (int, error) {
	w := fdWrites.Get().(*fdWrite)
	w.p = p
	err := raw.Write(w.call)
	n, werr := w.n, w.err
	*w = fdWrite{call: w.call} // the buffer is shared: do not keep it alive
	fdWrites.Put(w)
	if err != nil {
		return 0, err
	}
	return n, werr
}

// fdWrite is one RawConn.Write callback with its arguments and results.
// Pooled, so that a write allocates nothing and a connection carries no
// room for it while idle.
type fdWrite struct {
	p    []byte
	n    int
	err  error
	call func(fd uintptr) bool // once, nonblocking
}

var fdWrites = sync.Pool{New: func() any {
	w := new(fdWrite)
	w.call = w.once
	return w
}}

// once makes one write(2); returning true stops RawConn from waiting for
// room in the socket.
func (w *fdWrite) once(fd uintptr) bool {
	n, err := unix.Write(int(fd), w.p)
	for err == unix.EINTR {
		n, err = unix.Write(int(fd), w.p)
	}
	if err == unix.EAGAIN {
		n, err = 0, nil
	}
	w.n, w.err = max(n, 0), err
	return true
}

// tryWriteAfterResponse writes the handshake response and p in one write.
// If the socket takes less than the response, which a new socket's empty
// buffer makes all but impossible, the rest of the response is written
// blocking, so that nothing can overtake it.
func (t *transport) tryWriteAfterResponse(p []byte) (int, error) {
	head := len(t.response)
	buf := append(t.response, p...)
	t.response = nil
	if t.raw == nil {
		// No write that cannot block (TLS): the response is written
		// blocking as it would be after a short write, and p, the welcome
		// frame, goes with it, in one record.
		if err := t.writeAll(buf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	n, err := t.tryWrite(buf)
	if err != nil || n >= head {
		return max(n-head, 0), err
	}
	if err := t.writeAll(buf[n:head]); err != nil {
		return 0, err
	}
	return 0, nil
}

// flushResponse writes a handshake response still pending, blocking.
func (t *transport) flushResponse() error {
	if t.response == nil {
		return nil
	}
	r := t.response
	t.response = nil
	return t.writeAll(r)
}

func (t *transport) writeAll(p []byte) error {
	if err := t.conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
		return err
	}
	_, err := t.conn.Write(p)
	if derr := t.conn.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

// writeChunk is how much one deadline covers: the write timeout bounds a
// stall, not the time a large backlog takes to drain at a steady pace.
const writeChunk = 256 << 10

// Write blocks until every buffer is written, or until the socket has
// taken nothing for the write timeout.
func (t *transport) Write(bufs [][]byte) error {
	if !t.midFrame {
		t.boundary.Lock()
	}
	t.midFrame = false
	defer t.boundary.Unlock()
	if t.finished {
		return net.ErrClosed
	}
	err := t.write(bufs)
	if err != nil {
		t.finished = true
	}
	return err
}

// write is Write under the boundary lock.
func (t *transport) write(bufs [][]byte) error {
	if err := t.flushResponse(); err != nil {
		return err
	}
	var chunk net.Buffers
	size := 0
	flush := func() error {
		if err := t.conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
			return err
		}
		var err error
		if t.tls {
			err = writeJoined(t.conn, chunk)
		} else {
			_, err = chunk.WriteTo(t.conn)
		}
		chunk, size = chunk[:0], 0
		return err
	}
	for _, b := range bufs {
		for len(b) > 0 {
			n := min(len(b), writeChunk-size)
			chunk = append(chunk, b[:n])
			size += n
			b = b[n:]
			if size == writeChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	err := error(nil)
	if size > 0 {
		err = flush()
	}
	// A deadline left in place would fail TryWrite once it passes.
	if derr := t.conn.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

// tlsRecord is the most plaintext one TLS record carries.
const tlsRecord = 16 << 10

// joinBufs are writeJoined's buffers, taken only while it writes.
var joinBufs = sync.Pool{New: func() any { return new([tlsRecord]byte) }}

// writeJoined writes bufs to a TLS connection joined into pieces of up to
// one record: tls.Conn makes at least a record and a write(2) of every
// buffer it is given, and the writer's batches are often many small
// frames. Pieces larger than a record would save nothing: tls.Conn writes
// each record on its own.
func writeJoined(conn net.Conn, bufs net.Buffers) error {
	piece := joinBufs.Get().(*[tlsRecord]byte)
	defer joinBufs.Put(piece)
	n := 0
	for _, b := range bufs {
		for len(b) > 0 {
			k := copy(piece[n:], b)
			n, b = n+k, b[k:]
			if n == tlsRecord {
				if _, err := conn.Write(piece[:n]); err != nil {
					return err
				}
				n = 0
			}
		}
	}
	if n == 0 {
		return nil
	}
	_, err := conn.Write(piece[:n])
	return err
}

// Close sends the close frame, bounded by the write timeout, and starts
// the lingering close (gws closes its conn, a socketConn, right after the
// frame; the read loop closes the socket when the linger ends). After a
// failed write no close frame is sent, the socket may be inside a frame,
// but the close lingers all the same.
//
// A partial TryWrite may still hold the boundary, as for Write: the session
// closes right after one when it discarded the rest, which it does only if
// the part written ended on a frame boundary.
func (t *transport) Close(d session.Disconnect) error {
	if !t.midFrame {
		t.boundary.Lock()
	}
	t.midFrame = false
	err := t.flushResponse()
	if err != nil {
		t.finished = true // writeOwn refuses the close frame
	}
	t.boundary.Unlock()
	werr := t.socket.WriteClose(uint16(d.Code), []byte(d.Reason))
	if errors.Is(werr, gws.ErrConnClosed) || errors.Is(werr, net.ErrClosed) {
		// gws had closed it already (the client closed first), or the
		// socket was finished.
		werr = nil
	}
	if err == nil {
		err = werr
	}
	return err
}

// writeOwn writes a frame gws makes on its own (once attached, only close
// frames: pings are answered by the session) at a frame boundary, bounded
// by the write timeout; nothing is written after it.
func (t *transport) writeOwn(p []byte) (int, error) {
	t.boundary.Lock()
	defer t.boundary.Unlock()
	if t.finished {
		return 0, net.ErrClosed
	}
	if err := t.flushResponse(); err != nil {
		t.finished = true
		return 0, err
	}
	if len(p) > 0 && p[0]&0x0f == byte(gws.OpcodeCloseConnection) {
		t.finished = true
	}
	if err := t.conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
		t.finished = true
		return 0, err
	}
	n, err := t.conn.Write(p)
	if err != nil {
		t.finished = true
	}
	if derr := t.conn.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return n, err
}

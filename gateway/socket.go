package gateway

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// socketConn is a client's socket as gws sees it, from the upgrade on. It
// does three jobs gws leaves to the net.Conn it is given:
//
//   - Read frames the client's bytes (framing.go): gws is handed a frame
//     only once all of it has arrived, and a frame that does not arrive
//     within Config.FrameTimeout closes the connection with 1008.
//   - Write, while upgrading on the light path, keeps gws's 101 response
//     instead of writing it, so that the response and the welcome frame
//     leave in one write: one syscall less per connect, and the client
//     reads both at once (gws's 400 answers are written as usual). Once
//     attached, the writes gws makes on its own (the answer to a client's
//     close frame, a close on a protocol error) wait for a frame boundary of
//     the session's writes instead of landing inside a frame that is half
//     on the socket.
//   - Close, which gws calls right after writing a close frame, closes
//     lingering (see lingerLocked); before the upgrade succeeded (gws
//     answered 400), it closes as writeRawError does.
//
// The socket itself is Conn, never a wrapper, so that the transport's
// writes keep *net.TCPConn's writev and RawConn; with TLS, Conn is the
// *tls.Conn, which has neither (see newTransport).
type socketConn struct {
	net.Conn
	g        *Gateway   // nil in tests that only write
	response *[]byte    // while upgrading: where the 101 response goes
	t        *transport // once attached

	// The frame reader's state, touched by the read goroutine alone.
	buf        []byte // received, not yet handed on: buf[:ready] whole frames, then the start of a frame still arriving
	ready      int
	skip       uint64 // bytes still to come of a frame passed on unchecked, which gws refuses by its header
	timing     bool   // the read deadline bounds the frame (or fragmented message) in progress
	crossed    bool   // the last scan ended a message (a new frame after it starts a new deadline)
	fragmented bool   // a fragmented message has begun and not ended
	graced     bool   // the frame's deadline passed once: the next time is the frame timeout
	expired    bool   // the frame timeout closed the connection: deadlines are no longer the reader's
	gotClose   bool   // the client's close frame arrived: nothing after it is read

	// mu orders changes of the read deadline between the reader and the
	// linger, which other goroutines start.
	mu        sync.Mutex
	lingering atomic.Bool // set under mu: a close frame went out; frames are no longer heard
	ended     bool        // guarded by mu: the client's close frame arrived or a read failed
	closed    bool        // guarded by mu: the socket is closed
	retried   bool        // guarded by mu: a read timed out once while lingering
}

var switchingProtocols = []byte("HTTP/1.1 101 ")

func (c *socketConn) Write(p []byte) (int, error) {
	if c.response != nil && bytes.HasPrefix(p, switchingProtocols) {
		// Room for the welcome frame, which is appended to it.
		*c.response = append(make([]byte, 0, len(p)+256), p...)
		return len(p), nil
	}
	if c.t != nil {
		return c.t.writeOwn(p)
	}
	return c.Conn.Write(p)
}

// SetDeadline is gws's bound on writing the 101 response, so it bounds
// writes only: the read deadline belongs to the frame reader. While
// upgrading on the light path the response is not written at all.
func (c *socketConn) SetDeadline(t time.Time) error {
	if c.response != nil {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// closeLinger bounds how long a socket is read after the node's close
// frame, waiting for the client's close frame or EOF, before it is closed.
const closeLinger = 2 * time.Second

// Close is called by gws right after it wrote a close frame (or failed
// to), or after it answered a refused upgrade with 400.
func (c *socketConn) Close() error {
	if c.t == nil {
		linger(c.Conn)
		c.closeSocket()
		return nil
	}
	c.mu.Lock()
	c.lingerLocked(true)
	c.mu.Unlock()
	return nil
}

// lingerLocked starts the lingering close, unless it has begun or the
// client has ended its side already: closing a socket while the client's
// frames are still unread in it makes the kernel send a reset, which can
// destroy the close frame before the client reads it. halfClose sends a
// FIN after the close frame. From now on the read loop discards what it
// reads (see liveConn) and ends on the client's close frame, EOF or the
// linger's deadline; then OnClose closes the socket (see finish). Callers
// hold c.mu.
func (c *socketConn) lingerLocked(halfClose bool) {
	if c.lingering.Load() || c.closed {
		return
	}
	c.lingering.Store(true)
	if c.ended {
		return // the read loop is ending: finish closes at once
	}
	if cw, ok := tcpOf(c.Conn).(interface{ CloseWrite() error }); ok && halfClose {
		_ = cw.CloseWrite()
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(closeLinger))
}

// finish closes the socket once its read loop is over. If gws stopped
// reading on an error of its own (a frame it refused) before the client
// ended its side, it reads on first, discarding, as the linger would have.
func (c *socketConn) finish() {
	c.mu.Lock()
	drain := !c.ended && !c.closed
	if drain {
		// Usually under way already, with its FIN after gws's close
		// frame. If not, gws's close frame lost the race to one the session
		// is writing now: no FIN, which would cut that one off.
		c.lingerLocked(false)
	}
	c.mu.Unlock()
	if drain {
		scratch := make([]byte, 512)
		for {
			if _, err := c.Read(scratch); err != nil {
				break
			}
		}
	}
	c.closeSocket()
}

// closeSocket closes the socket, once, and stops counting it.
func (c *socketConn) closeSocket() {
	c.mu.Lock()
	done := c.closed
	c.closed = true
	c.mu.Unlock()
	if done {
		return
	}
	_ = tcpOf(c.Conn).Close()
	if c.g != nil {
		c.g.open.Add(-1)
	}
}

// tcpOf is the socket under conn: conn itself, or a TLS connection's. A
// WebSocket's socket is half-closed and closed through it: tls.Conn would
// first send a close_notify alert, which waits, up to 5 s (under c.mu for
// the half-close), for room in the socket of a client that reads nothing.
// The close frame already ends the stream, and TLS clients take a FIN at a
// record boundary as its end.
func tcpOf(conn net.Conn) net.Conn {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return conn
}

// setReadDeadline sets the frame reader's read deadline, unless the linger
// has set its own.
func (c *socketConn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	if !c.lingering.Load() {
		_ = c.Conn.SetReadDeadline(t)
	}
	c.mu.Unlock()
}

// end records that the stream is over for the reader.
func (c *socketConn) end() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
}

package gateway

import (
	"errors"
	"net"
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

// events turns gws callbacks into hub calls. They all run on the
// connection's read goroutine.
type events struct{ hub *session.Hub }

var _ gws.Event = (*events)(nil)

func (e *events) OnOpen(*gws.Conn)             {}
func (e *events) OnPong(*gws.Conn, []byte)     {}
func (e *events) OnPing(s *gws.Conn, p []byte) { connOf(s).Pong(p) }

// OnMessage hands the frame to the connection's own worker, so the read
// loop's stack stays small; the hub closes m when done with it.
func (e *events) OnMessage(s *gws.Conn, m *gws.Message) {
	c := connOf(s)
	if m.Opcode == gws.OpcodeBinary {
		_ = m.Close()
		e.hub.Binary(c)
		return
	}
	e.hub.Enqueue(c, m)
}

func (e *events) OnClose(s *gws.Conn, err error) {
	if c := connOf(s); c != nil {
		e.hub.Closed(c, err)
	}
}

// transport is session.Transport over a gws connection. Data frames come
// already framed from the session and go straight to the socket; gws's own
// writer is used only for the close frame.
type transport struct {
	socket  *gws.Conn
	conn    net.Conn
	raw     syscall.RawConn // nil when the socket has none (then TryWrite writes nothing)
	timeout time.Duration
}

var _ session.Transport = (*transport)(nil)

func newTransport(socket *gws.Conn, timeout time.Duration) *transport {
	t := &transport{socket: socket, conn: socket.NetConn(), timeout: timeout}
	if sc, ok := t.conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			t.raw = raw
		}
	}
	return t
}

// TryWrite makes one non-blocking write(2). Go's sockets are non-blocking;
// returning true from the callback stops RawConn from waiting for room.
func (t *transport) TryWrite(p []byte) (int, error) {
	if t.raw == nil {
		return 0, nil
	}
	var n int
	var werr error
	err := t.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Write(int(fd), p)
			if werr != unix.EINTR {
				break
			}
		}
		if werr == unix.EAGAIN {
			n, werr = 0, nil
		}
		if n < 0 {
			n = 0
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}

// writeChunk is how much one deadline covers: the write timeout bounds a
// stall, not the time a large backlog takes to drain at a steady pace.
const writeChunk = 256 << 10

// Write blocks until every buffer is written, or until the socket has
// taken nothing for the write timeout.
func (t *transport) Write(bufs [][]byte) error {
	var chunk net.Buffers
	size := 0
	flush := func() error {
		if err := t.conn.SetWriteDeadline(time.Now().Add(t.timeout)); err != nil {
			return err
		}
		_, err := chunk.WriteTo(t.conn)
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

// Close sends the close frame, bounded by the write timeout, and closes.
func (t *transport) Close(d session.Disconnect) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	err := t.socket.WriteClose(uint16(d.Code), []byte(d.Reason))
	if errors.Is(err, gws.ErrConnClosed) {
		// gws had closed it already (the client closed first).
		err = nil
	}
	_ = t.conn.Close()
	return err
}

package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/session"
)

// The light handshake path. A connection whose first request is GET /ws is
// upgraded without net/http: its request is read through the small buffer
// that then stays the connection's read buffer, instead of net/http's two
// 4 KiB buffers, which a hijack leaves as garbage on every connect. Every
// other connection goes to net/http unchanged, through a handoff listener.

const handshakeTimeout = 10 * time.Second

// handoff is a net.Listener fed by a worker's accept loop.
type handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error   { h.once.Do(func() { close(h.done) }); return nil }
func (h *handoff) Addr() net.Addr { return h.addr }

func (h *handoff) give(c net.Conn) {
	select {
	case h.conns <- c:
	case <-h.done:
		_ = c.Close()
	}
}

// replayConn reads through the buffer that peeked at the request first.
type replayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// SyscallConn lets a WebSocket upgraded through net/http write straight to
// the socket too (see transport.TryWrite).
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// acceptLoop accepts on one worker listener until it is closed.
func (g *Gateway) acceptLoop(l net.Listener, h *handoff) {
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.Warn("accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go g.serveConn(conn, h)
	}
}

var wsRequest = []byte("GET /ws")

// serveConn upgrades a connection whose first request is GET /ws and hands
// any other to net/http.
func (g *Gateway) serveConn(conn net.Conn, h *handoff) {
	br := bufio.NewReaderSize(conn, readBufferSize)
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	head, err := br.Peek(len(wsRequest) + 1)
	if err != nil {
		_ = conn.Close()
		return
	}
	if !bytes.HasPrefix(head, wsRequest) || (head[len(wsRequest)] != ' ' && head[len(wsRequest)] != '?') {
		_ = conn.SetReadDeadline(time.Time{})
		h.give(&replayConn{Conn: conn, r: br})
		return
	}
	r, err := readUpgradeRequest(br)
	if err != nil {
		// Only the parser's own words: an I/O error names internal
		// addresses.
		status, msg := http.StatusBadRequest, "malformed request"
		switch {
		case errors.Is(err, errHeadTooLarge):
			status, msg = http.StatusRequestHeaderFieldsTooLarge, err.Error()
		case errors.Is(err, errBadRequest):
			msg = err.Error()
		}
		writeRawError(conn, status, msg)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	r.RemoteAddr = conn.RemoteAddr().String()
	g.upgrade(conn, br, r)
}

// upgrade checks the request, upgrades it and hands the connection to the
// hub; errors are answered as HTTP with a JSON body.
func (g *Gateway) upgrade(conn net.Conn, br *bufio.Reader, r *http.Request) {
	user, he := g.admit(r)
	if he != nil {
		writeRawError(conn, he.Status, he.Msg)
		return
	}
	sc := &socketConn{Conn: conn}
	var response []byte
	sc.response = &response
	socket, err := g.upgrader.UpgradeFromConn(sc, br, r)
	if err != nil {
		g.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // gws answered 400 and closed
	}
	sc.response = nil
	g.attach(socket, sc, response, user, r)
}

// socketConn is a connection as gws sees it. While upgrading on the light
// path it keeps gws's 101 response instead of writing it, so that the
// response and the welcome frame leave in one write: one syscall less per
// connect, and the client reads both at once (gws's 400 answers are
// written as usual). Once attached, the writes gws makes on its own (the
// answer to a client's close frame, a close on a protocol error) wait for a
// frame boundary of the session's writes instead of landing inside a
// frame that is half on the socket.
type socketConn struct {
	net.Conn
	response *[]byte    // while upgrading: where the 101 response goes
	t        *transport // once attached
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

// SetDeadline is gws's bound on writing the response, which is not written
// during the upgrade.
func (c *socketConn) SetDeadline(t time.Time) error {
	if c.response != nil {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

// attach registers an upgraded socket with the hub and starts its read
// loop on a fresh goroutine, whose stack starts small. response, if not
// nil, is the handshake response still to be written, ahead of the first
// frame.
func (g *Gateway) attach(socket *gws.Conn, sc *socketConn, response []byte, user string, r *http.Request) {
	t := newTransport(socket, sc.Conn, response, g.cfg.WriteTimeout)
	sc.t = t
	c, err := g.hub.Connect(t, user, clientIP(r, g))
	if err != nil {
		if !errors.Is(err, session.ErrDraining) { // the hub closes those itself
			_ = t.Close(session.DisconnectGoingAway)
		}
		return
	}
	socket.Session().(*connRef).c = c
	go socket.ReadLoop()
}

// writeRawError answers a request read outside net/http and closes.
func writeRawError(conn net.Conn, status int, msg string) {
	quoted, _ := json.Marshal(msg) // a string always marshals
	body := fmt.Sprintf("{\"error\":%s}\n", quoted)
	_ = conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
	lingeringClose(conn)
}

// lingeringClose closes conn after the client has had time to read the
// answer: closing with request bytes still unread makes the kernel send a
// reset, which can discard the answer before the client reads it. As
// net/http, it half-closes first and waits briefly for the client to close.
func lingeringClose(conn net.Conn) {
	if hc, ok := conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, lingerBytes))
	}
	_ = conn.Close()
}

// lingerTimeout and lingerBytes bound what lingeringClose waits for.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
)

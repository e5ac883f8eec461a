package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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

// give hands c to net/http; false if the handoff is closed.
func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
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
		if g.open.Add(1) > int64(g.maxConns) {
			g.open.Add(-1)
			g.refuseFull(conn)
			continue
		}
		go g.serveConn(conn, h)
	}
}

// maxRefusing bounds the refusals of a full node that linger at once; the
// refused connections are not counted against MaxConnections, but each
// holds a file while it lingers.
const maxRefusing = 64

// refuseFull answers a connection over MaxConnections at once with 503
// {"error":"server full"}: a client is never left hanging, and the node
// never stops accepting. Past maxRefusing refusals in progress, the answer
// is one write that cannot block, and the socket is closed at once.
//
// With TLS the refusal completes the handshake first, within
// HandshakeTimeout, so that the client reads a 503 it can act on (back off,
// try another node) rather than a reset that looks like a broken server;
// maxRefusing bounds the handshakes a full node does at once. Past it, the
// socket is closed without a word: a plaintext answer would be garbage to
// a TLS client.
func (g *Gateway) refuseFull(conn net.Conn) {
	const msg = "server full"
	if g.refusing.Add(1) <= maxRefusing {
		go func() {
			defer g.refusing.Add(-1)
			if g.tls != nil {
				tc := g.startTLS(conn)
				if tc == nil {
					return
				}
				conn = tc
			}
			writeRawError(conn, g.cfg.WriteTimeout, http.StatusServiceUnavailable, msg)
		}()
		return
	}
	g.refusing.Add(-1)
	if g.tls == nil {
		if sc, ok := conn.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				_, _ = writeOnce(raw, rawError(http.StatusServiceUnavailable, msg))
			}
		}
	}
	_ = conn.Close()
}

// startTLS runs the TLS handshake of conn, a socket just accepted, within
// HandshakeTimeout; the read deadline it sets stays, to bound the request
// head too. If the handshake fails it answers a client that spoke plain
// HTTP with a 400, closes conn and returns nil.
func (g *Gateway) startTLS(conn net.Conn) *tls.Conn {
	_ = conn.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	tc := tls.Server(conn, g.tls)
	err := tc.Handshake()
	if err == nil {
		_ = conn.SetWriteDeadline(time.Time{})
		return tc
	}
	// As net/http: a client that sent plain HTTP gets a plain answer that
	// says why, instead of a TLS alert it cannot read.
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
		writeRawError(rh.Conn, g.cfg.WriteTimeout, http.StatusBadRequest, "client sent an HTTP request to an HTTPS server")
		return nil
	}
	g.log.Debug("TLS handshake", "remote", conn.RemoteAddr().String(), "err", err)
	_ = conn.Close()
	return nil
}

// looksLikeHTTP reports whether the first five bytes a client sent, which
// TLS took for a record header, start a plaintext HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// closeConn closes a connection that was never upgraded nor handed to
// net/http, and stops counting it.
func (g *Gateway) closeConn(conn net.Conn) {
	_ = conn.Close()
	g.open.Add(-1)
}

// refuse answers a request read outside net/http with status and a JSON
// body, and closes lingering.
func (g *Gateway) refuse(conn net.Conn, status int, msg string) {
	writeRawError(conn, g.cfg.WriteTimeout, status, msg)
	g.open.Add(-1)
}

var wsRequest = []byte("GET /ws")

// serveConn upgrades a connection whose first request is GET /ws, serves
// one a light route takes (see MountUpgrades), and hands any other to
// net/http. With TLS, it runs the handshake first: from the
// accept, the handshake and the request head have HandshakeTimeout
// together.
func (g *Gateway) serveConn(conn net.Conn, h *handoff) {
	if g.tls != nil {
		tc := g.startTLS(conn)
		if tc == nil {
			g.open.Add(-1)
			return
		}
		conn = tc
	} else {
		_ = conn.SetReadDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	}
	br := bufio.NewReaderSize(conn, readBufferSize)
	line, err := peekLine(br)
	if err != nil {
		g.closeConn(conn) // no whole request line: as net/http, no answer
		return
	}
	light := g.lightRouteOf(line)
	isWS := bytes.HasPrefix(line, wsRequest) && len(line) > len(wsRequest) &&
		(line[len(wsRequest)] == ' ' || line[len(wsRequest)] == '?')
	if !isWS && light == nil {
		// net/http sets its own deadlines; it closes the connection and
		// says so through connState.
		_ = conn.SetReadDeadline(time.Time{})
		if !h.give(&replayConn{Conn: conn, r: br}) {
			g.closeConn(conn)
		}
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
		case errors.Is(err, os.ErrDeadlineExceeded):
			status, msg = http.StatusRequestTimeout, "request head not received in time"
		}
		g.refuse(conn, status, msg)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	r.RemoteAddr = conn.RemoteAddr().String()
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		r.TLS = &st
	}
	if light != nil {
		g.serveLight(conn, br, r, light)
		return
	}
	g.upgrade(conn, br, r)
}

// upgrade checks the request, upgrades it and hands the connection to the
// hub; errors are answered as HTTP with a JSON body.
func (g *Gateway) upgrade(conn net.Conn, br *bufio.Reader, r *http.Request) {
	id, he := g.admit(r)
	if he != nil {
		g.refuse(conn, he.Status, he.Msg)
		return
	}
	sc := &socketConn{Conn: conn, g: g}
	var response []byte
	sc.response = &response
	socket, err := g.upgrader.UpgradeFromConn(sc, br, r)
	if err != nil {
		g.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return // gws answered 400 and closed sc
	}
	sc.response = nil
	// From here on gws reads through the frame reader, which takes over
	// what the handshake's reader read past the request head first.
	sc.adopt(buffered(br))
	br.Reset(sc)
	g.attach(socket, sc, response, id, r)
}

// attach registers an upgraded socket with the hub and starts its read
// loop on a fresh goroutine, whose stack starts small. response, if not
// nil, is the handshake response still to be written, ahead of the first
// frame.
//
// The read loop runs even if the hub refused the connection: the close
// frame is on its way, and the loop lingers after it and closes the socket
// (see socketConn.finish), without a session connection to hear frames.
func (g *Gateway) attach(socket *gws.Conn, sc *socketConn, response []byte, id session.Identity, r *http.Request) {
	t := newTransport(socket, sc.Conn, response, g.cfg.WriteTimeout)
	sc.t = t
	c, err := g.hub.Connect(t, id, clientIP(r, g))
	switch {
	case err == nil:
		socket.Session().(*connRef).c = c
		g.wsConns.Add(1)
	case !errors.Is(err, session.ErrDraining): // the hub closes those itself
		_ = t.Close(session.DisconnectGoingAway)
	}
	go socket.ReadLoop()
}

// writeRawError answers a request read outside net/http, the write bounded
// by timeout, and closes lingering.
func writeRawError(conn net.Conn, timeout time.Duration, status int, msg string) {
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	_, _ = conn.Write(rawError(status, msg))
	lingeringClose(conn)
}

// rawError is an HTTP response with status and a JSON body {"error":msg}
// that closes the connection.
func rawError(status int, msg string) []byte {
	quoted, _ := json.Marshal(msg) // a string always marshals
	body := fmt.Sprintf("{\"error\":%s}\n", quoted)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// lingeringClose closes conn after the client has had time to read the
// answer (see linger).
func lingeringClose(conn net.Conn) {
	linger(conn)
	_ = conn.Close()
}

// linger half-closes conn and reads until the client closes, briefly:
// closing with request bytes still unread makes the kernel send a reset,
// which can discard the answer before the client reads it. As net/http.
func linger(conn net.Conn) {
	if hc, ok := conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, lingerBytes))
	}
}

// lingerTimeout and lingerBytes bound what lingeringClose waits for.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
)

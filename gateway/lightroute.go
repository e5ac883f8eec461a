package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Light routes: a mounted handler's WebSocket upgrades on the light path.
// A Socket.IO client opening on a WebSocket makes one request, an upgrade;
// through net/http it costs two 4 KiB buffers, a goroutine whose stack
// grows through the server's frames, and a parse into maps, on every
// connect. A light route takes such requests, chosen by their request
// line, through the small reader /ws requests are read with, and hands
// them to the handler with a ResponseWriter of its own: one that can be
// hijacked, and that answers anything else with the connection closed.

// lightRoute is a handler and the request targets it takes on the light
// path.
type lightRoute struct {
	takes func(target string) bool
	h     http.Handler
}

// MountUpgrades serves on the light path the GET requests whose request
// target (path and query, as the client sent them) takes accepts: h gets
// them without net/http, with a ResponseWriter that implements
// http.Hijacker (Upgrade takes it) and answers any other response with
// Connection: close. takes sees every request line's target, so it must be
// cheap; it should accept only WebSocket upgrades, since requests that are
// not lose keep-alive. The requests it refuses, and every other method,
// go to net/http and the handlers of Mount as before. Call it before
// Start.
func (g *Gateway) MountUpgrades(takes func(target string) bool, h http.Handler) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.listeners != nil {
		return fmt.Errorf("gateway: mount upgrades: the gateway has started")
	}
	if takes == nil || h == nil {
		return fmt.Errorf("gateway: mount upgrades: a nil function or handler")
	}
	g.light = append(g.light, lightRoute{takes: takes, h: h})
	return nil
}

// lightRouteOf is the light route that takes line, a request line (or as
// much of one as the reader holds), or nil.
func (g *Gateway) lightRouteOf(line []byte) http.Handler {
	if len(g.light) == 0 || !bytes.HasPrefix(line, []byte("GET ")) {
		return nil
	}
	target, _, ok := bytes.Cut(line[len("GET "):], []byte(" "))
	if !ok {
		return nil // longer than the reader: net/http reads it
	}
	for _, r := range g.light {
		if r.takes(string(target)) {
			return r.h
		}
	}
	return nil
}

// peekLine returns the request line the client sent first, up to its
// '\n', without consuming it; or, if the reader fills up first, what it
// holds. It waits for more only while no '\n' has come.
func peekLine(br *bufio.Reader) ([]byte, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1], nil
		}
		if len(b) == br.Size() {
			return b, nil
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			b, _ = br.Peek(br.Buffered())
			return b, err
		}
	}
}

// serveLight serves r, read on the light path, with h. A hijacked
// connection is the hijacker's (the socket's close stops counting it);
// otherwise the answer goes out and the connection closes.
func (g *Gateway) serveLight(conn net.Conn, br *bufio.Reader, r *http.Request, h http.Handler) {
	w := &lightResponse{conn: conn, br: br, header: make(http.Header, 4)}
	h.ServeHTTP(w, r)
	if w.hijacked {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
	_, _ = conn.Write(w.response())
	lingeringClose(conn)
	g.open.Add(-1)
}

// lightResponse is the ResponseWriter of a request on the light path: the
// body is kept and goes out, after the head, when the handler returns.
type lightResponse struct {
	conn     net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	body     []byte
	hijacked bool
}

var _ http.Hijacker = (*lightResponse)(nil)

func (w *lightResponse) Header() http.Header { return w.header }

func (w *lightResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *lightResponse) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands over the connection and the reader that holds what the
// client sent after the request head. The writer is a small one: Upgrade
// writes to the connection itself.
func (w *lightResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.conn, 16)), nil
}

// response is the status line, the headers the handler set, and the body,
// with the connection closing after it.
func (w *lightResponse) response() []byte {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	w.header.Del("Content-Length")
	w.header.Del("Connection")
	_ = w.header.Write(&b)
	if !bodyAllowed(status) {
		b.WriteString("Connection: close\r\n\r\n")
		return b.Bytes()
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(w.body)) + "\r\nConnection: close\r\n\r\n")
	b.Write(w.body)
	return b.Bytes()
}

// bodyAllowed reports whether a response with status may have a body (and
// a Content-Length), as net/http's bodyAllowedForStatus.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/session"
)

// The edge: what a handler mounted on the gateway (the Socket.IO server)
// needs of it, so that its clients pass the checks of /ws clients, count
// against the same limits and get the same sockets, without the handler
// importing the gateway (it declares the interface it needs).

// Admit decides whether r may open a session, and who it is, as for GET
// /ws: the node is ready, r's Origin is allowed (Config.Origins), and
// Config.Authorize, else the user query parameter, names the user. On
// refusal status is the HTTP status (503, 403, 401, 400) and err's text is
// the message for the client, the one a refused /ws gets in its
// {"error":...}; on success status is 200.
func (g *Gateway) Admit(r *http.Request) (id session.Identity, status int, err error) {
	id, he := g.admit(r)
	if he != nil {
		return session.Identity{}, he.Status, errors.New(he.Msg)
	}
	return id, http.StatusOK, nil
}

// AllowedOrigin reports whether a browser page at r's Origin may use the
// gateway (Config.Origins), for CORS answers. A request without an Origin,
// which is not a browser's, may.
func (g *Gateway) AllowedOrigin(r *http.Request) bool { return g.origins.allows(r) }

// ClientIP is r's client address, after trusted proxies
// (Config.TrustedProxies).
func (g *Gateway) ClientIP(r *http.Request) netip.Addr { return clientIP(r, g) }

// Upgrade upgrades r, which came through net/http (a mounted handler's)
// and which the caller has admitted (see Admit), to a WebSocket whose
// frames go to the caller instead of the hub. first, when not nil, is a
// complete frame written with the 101 response, in one write, before
// anything else.
//
// The socket is read as a /ws socket is: a frame larger than the session's
// MaxMessageBytes closes it with 1009, one that takes longer than
// Config.FrameTimeout to arrive with 1008, text that is not UTF-8 with
// 1007, a binary message with 1003; a ping is answered with a pong. Each
// text message goes to in, whole, one at a time and in order, on the
// socket's read goroutine; data is valid during the call only. Once a
// close frame has gone out, nothing more goes to in. closed is called
// once, when the read loop has ended, whatever ended it. Both may be
// called before Upgrade returns.
//
// The transport is the one /ws connections have: TryWrite and Write take
// complete WebSocket frames, Close sends a close frame and closes
// lingering. The caller's calls to it must not overlap, as the hub's do
// not. The socket's own writes (pongs, the closes above) wait for a frame
// boundary: after a partial TryWrite, the Write with the rest must not
// wait for the read goroutine. The socket counts against
// Config.MaxConnections from its accept until it is closed, and Shutdown
// waits for that: the caller closes it when the node shuts down.
//
// On error the request has been answered (or its connection closed), and
// neither in nor closed is called.
func (g *Gateway) Upgrade(w http.ResponseWriter, r *http.Request, first []byte, in func(data []byte), closed func(error)) (session.Transport, error) {
	conn, pending, err := hijack(w)
	if err != nil {
		return nil, err
	}
	sc := &socketConn{Conn: conn, g: g}
	var response []byte
	if first != nil {
		// The 101 response waits for the first frame, and both leave in
		// one write, as on the light path.
		sc.response = &response
	}
	socket, err := g.edge.UpgradeFromConn(sc, bufio.NewReaderSize(sc, readBufferSize), r)
	if err != nil {
		return nil, fmt.Errorf("gateway: upgrade: %w", err) // gws answered 400 and closed sc
	}
	sc.response = nil
	sc.adopt(pending)
	ref := socket.Session().(*edgeRef)
	ref.in, ref.closed = in, closed
	t := newTransport(socket, sc.Conn, response, g.cfg.WriteTimeout)
	sc.t = t
	if first != nil {
		// Before the read loop starts: nothing of the socket's own (a
		// pong, a close) can go ahead of the response.
		n, err := t.TryWrite(first)
		if err == nil && n < len(first) {
			err = t.Write([][]byte{first[n:]})
		}
		if err != nil {
			sc.finish()
			return nil, fmt.Errorf("gateway: upgrade: %w", err)
		}
	}
	go socket.ReadLoop()
	return t, nil
}

// edgeRef is the gws session storage of a socket of Upgrade: where its
// messages and its end go.
type edgeRef struct {
	in     func(data []byte)
	closed func(error)
}

var _ gws.SessionStorage = (*edgeRef)(nil)

func (r *edgeRef) Len() int                           { return 0 }
func (r *edgeRef) Load(string) (any, bool)            { return nil, false }
func (r *edgeRef) Delete(string)                      {}
func (r *edgeRef) Store(string, any)                  {}
func (r *edgeRef) Range(func(key string, v any) bool) {}

// edgeEvents turns gws callbacks of Upgrade's sockets into calls of their
// owner's in and closed. They all run on the socket's read goroutine.
type edgeEvents struct{}

var _ gws.Event = edgeEvents{}

func (edgeEvents) OnOpen(*gws.Conn)         {}
func (edgeEvents) OnPong(*gws.Conn, []byte) {}

// OnPing answers through the socket's own writes: the owner's frames are
// its own protocol's, and there is no hub to answer as for /ws.
func (edgeEvents) OnPing(s *gws.Conn, p []byte) { _ = s.WritePong(p) }

// OnMessage hands a text message to the owner; gws's buffer goes back to
// its pool after the call.
func (edgeEvents) OnMessage(s *gws.Conn, m *gws.Message) {
	defer m.Close()
	switch {
	case s.NetConn().(*socketConn).lingering.Load():
		// A close frame has gone out: frames are read and discarded.
	case m.Opcode == gws.OpcodeBinary:
		d := session.DisconnectBinary
		_ = s.WriteClose(uint16(d.Code), []byte(d.Reason))
	default:
		s.Session().(*edgeRef).in(m.Bytes())
	}
}

// OnClose tells the owner, then closes the socket, as events.OnClose does.
func (edgeEvents) OnClose(s *gws.Conn, err error) {
	s.Session().(*edgeRef).closed(err)
	s.NetConn().(*socketConn).finish()
}

// Mount serves h for the requests that pattern, a net/http ServeMux
// pattern without a host (such as "/socket.io/" or "POST /hook/"),
// matches, ahead of the gateway's own routes. Call it before Start. It
// refuses a pattern that would take a request of the gateway's own routes
// (GET /ws, /healthz, /readyz, /metrics, and the demo page at /), or that
// conflicts with one mounted before.
func (g *Gateway) Mount(pattern string, h http.Handler) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.listeners != nil {
		return fmt.Errorf("gateway: mount %q: the gateway has started", pattern)
	}
	path := pattern
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		path = strings.TrimLeft(pattern[i+1:], " \t")
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("gateway: mount %q: not a path pattern (a method may come first, a host may not)", pattern)
	}
	probe := http.NewServeMux()
	if err := handle(probe, pattern, h); err != nil {
		return fmt.Errorf("gateway: mount %q: %w", pattern, err)
	}
	for _, p := range g.builtin {
		if _, taken := probe.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: p}}); taken != "" {
			return fmt.Errorf("gateway: mount %q: it would take GET %s from the gateway", pattern, p)
		}
	}
	if g.mounts == nil {
		g.mounts = http.NewServeMux()
	}
	if err := handle(g.mounts, pattern, h); err != nil {
		return fmt.Errorf("gateway: mount %q: %w", pattern, err)
	}
	return nil
}

// handle registers h on mux, and returns the mux's refusal (a malformed
// pattern, a nil handler, a conflict with a pattern registered before) as
// an error instead of its panic, which it raises before changing anything.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// CountConnections adds delta to the connections of transport that
// pushgrid_connections{transport=...} reports: a mounted handler counts
// its own ("sio-polling", "sio-websocket") as they open, change transport
// and end. For the labelled series to add up to the unlabelled total (the
// hub's connections), count a connection while it is the hub's. The
// gateway counts "ws" itself: transport "ws", or "" (the unlabelled
// series), panics.
func (g *Gateway) CountConnections(transport string, delta int) {
	if transport == "" || transport == transportWS {
		panic(fmt.Sprintf("gateway: CountConnections(%q): that series is the gateway's own", transport))
	}
	g.countMu.Lock()
	defer g.countMu.Unlock()
	if g.counts == nil {
		g.counts = make(map[string]int64)
	}
	g.counts[transport] += int64(delta)
}

package socketio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// engineSession is one Engine.IO session on the node that owns it: its
// transport (long-polling, or a WebSocket after the upgrade or from the
// start), the heartbeat, and the Socket.IO connection it carries.
type engineSession struct {
	srv    *Server
	sid    string
	req    *http.Request // guarded by recv; the handshake's (header, URL, remote address) for auth at CONNECT, nil once admitted
	remote netip.Addr

	// recv serializes the handling of the client's packets, which come in
	// posts or WebSocket messages.
	recv sync.Mutex
	sock *socket // guarded by recv; the Socket.IO connection, once CONNECT came
	// marker is the socket's ack marker (see socket), for the hub's writes,
	// which do not hold recv; nil before CONNECT.
	marker atomic.Pointer[[]byte]

	mu      sync.Mutex
	queue   [][]byte      // guarded by mu; packets for the next poll
	queued  int           // guarded by mu; their bytes
	wake    chan struct{} // guarded by mu; closed when packets or the end come for a waiting poll
	room    chan struct{} // guarded by mu; closed when a poll takes the queue
	polling bool          // guarded by mu; a poll waits
	ws      *wsOut        // guarded by mu; the WebSocket, once upgraded: packets go there
	ended   bool          // guarded by mu
	hub     *session.Conn // guarded by mu; the hub's connection, once connected
	counted string        // guarded by mu; the transport label hub is counted under, "" when not
	// relayedPoll cancels the poll under way, when another node relayed
	// it (see relay.go); guarded by mu.
	relayedPoll context.CancelFunc
	ping        *time.Timer // guarded by mu; the next ping
	pong        *time.Timer // guarded by mu; the end, unless a pong comes first
}

func newEngineSession(s *Server, sid string, r *http.Request) *engineSession {
	// What Admit reads of the handshake, kept past the request: its
	// header and URL are read only (connect copies what it changes).
	req := &http.Request{Method: http.MethodGet, URL: r.URL, Header: r.Header, RemoteAddr: r.RemoteAddr,
		Host: r.Host, TLS: r.TLS, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor}
	return &engineSession{srv: s, sid: sid, req: req, remote: s.edge.ClientIP(r)}
}

// conn is the hub's connection, nil before CONNECT.
func (es *engineSession) conn() *session.Conn {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.hub
}

func (es *engineSession) handshake(upgrade bool) []byte {
	cfg := &es.srv.cfg
	return AppendOpen(nil, Handshake{SID: es.sid, Upgrade: upgrade, PingInterval: cfg.PingInterval,
		PingTimeout: cfg.PingTimeout, MaxPayload: cfg.MaxPayload})
}

// openPolling answers a long-polling handshake with the open packet.
func (es *engineSession) openPolling(w http.ResponseWriter) {
	writePayload(w, [][]byte{es.handshake(true)})
	es.startHeartbeat()
}

// openWebSocket starts a session on a WebSocket: the open packet is its
// first frame.
func (es *engineSession) openWebSocket(w http.ResponseWriter, r *http.Request) {
	var ready sync.WaitGroup
	ready.Add(1)
	// The open packet leaves with the 101 response: the client's packets,
	// which the read loop may hand over at once, are answered after it.
	t, err := es.srv.edge.Upgrade(w, r, wsFrame(nil, es.handshake(false)), func(data []byte) {
		ready.Wait()
		es.receiveFrame(data)
	}, func(err error) { es.end(socketClosed(err)) })
	if err != nil {
		ready.Done()
		es.srv.forget(es)
		return // the edge answered the request
	}
	out := newWSOut(es, t)
	es.mu.Lock()
	es.ws = out
	es.mu.Unlock()
	ready.Done()
	es.startHeartbeat()
}

// socketClosed is why a session whose WebSocket ended is over.
func socketClosed(err error) error {
	if err == nil {
		return errors.New("socketio: the WebSocket closed")
	}
	return fmt.Errorf("socketio: the WebSocket closed: %w", err)
}

// writePayload answers a poll with packets.
func writePayload(w http.ResponseWriter, packets [][]byte) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(AppendPayload(nil, packets))
}

// poll answers a long-polling GET with the packets waiting, or waits for
// some: a ping comes every ping interval.
func (es *engineSession) poll(w http.ResponseWriter, r *http.Request) {
	es.mu.Lock()
	if es.ws != nil || es.polling {
		// A poll after the upgrade, or two at once: the client is broken.
		es.mu.Unlock()
		errBadRequest.write(w)
		es.end(errors.New("socketio: a poll overlapping another, or after the upgrade"))
		return
	}
	es.polling = true
	limit := time.NewTimer(es.srv.pollLimit())
	defer limit.Stop()
	for len(es.queue) == 0 && !es.ended && es.ws == nil {
		if es.wake == nil {
			es.wake = make(chan struct{})
		}
		wake := es.wake
		es.mu.Unlock()
		select {
		case <-wake:
		case <-r.Context().Done():
			es.mu.Lock()
			es.polling = false
			es.mu.Unlock()
			if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				// A relayed poll's time is up (see relayPoll): it answers
				// with a noop, and the client polls again.
				writePayload(w, [][]byte{{byte(EngineNoop)}})
			}
			return // else the client went away; the heartbeat ends the session if it does not come back
		case <-limit.C:
			es.end(errors.New("socketio: no ping for a whole poll"))
		}
		es.mu.Lock()
	}
	packets := es.queue
	es.queue, es.queued, es.polling = nil, 0, false
	if es.room != nil {
		close(es.room)
		es.room = nil
	}
	switch {
	case len(packets) > 0:
	case es.ended:
		packets = [][]byte{{byte(EngineClose)}}
	default: // upgraded meanwhile
		packets = [][]byte{{byte(EngineNoop)}}
	}
	es.mu.Unlock()
	writePayload(w, packets)
}

// post takes the packets of a long-polling POST.
func (es *engineSession) post(w http.ResponseWriter, r *http.Request) {
	es.mu.Lock()
	upgraded := es.ws != nil
	es.mu.Unlock()
	if upgraded {
		errBadRequest.write(w)
		return
	}
	max := es.srv.cfg.MaxPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		errBadRequest.write(w)
		return
	}
	if len(body) > max {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, "{\"code\":3,\"message\":\"payload too large\"}\n")
		es.end(errors.New("socketio: a post over socketio.max_payload"))
		return
	}
	es.recv.Lock()
	err = DecodePayload(body, max, es.receive)
	es.recv.Unlock()
	if err != nil {
		errBadRequest.write(w)
		es.end(fmt.Errorf("socketio: a bad packet: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}

// receiveFrame takes a WebSocket text message of the session's socket.
func (es *engineSession) receiveFrame(data []byte) {
	p, err := DecodeEngine(data, es.srv.maxPacket)
	if err == nil {
		es.recv.Lock()
		err = es.receive(p)
		es.recv.Unlock()
	}
	if err != nil {
		es.end(fmt.Errorf("socketio: a bad packet: %w", err))
	}
}

// errClientClosed ends a session the client closed.
var errClientClosed = errors.New("socketio: the client closed the session")

// receive handles one packet from the client; callers hold es.recv. An
// error ends the session.
func (es *engineSession) receive(p EnginePacket) error {
	if p.Binary {
		return ErrBinary
	}
	switch p.Type {
	case EnginePong:
		es.ponged()
	case EngineMessage:
		return es.socketPacket(p.Data)
	case EngineClose:
		return errClientClosed
	case EngineNoop:
	default:
		return fmt.Errorf("socketio: packet type %c from a client", p.Type)
	}
	return nil
}

// startHeartbeat arms the first ping.
func (es *engineSession) startHeartbeat() {
	es.mu.Lock()
	defer es.mu.Unlock()
	if !es.ended {
		es.ping = time.AfterFunc(es.srv.cfg.PingInterval, es.sendPing)
	}
}

// sendPing pings the client, which has ping_timeout to answer.
func (es *engineSession) sendPing() {
	es.mu.Lock()
	if es.ended {
		es.mu.Unlock()
		return
	}
	es.pong = time.AfterFunc(es.srv.cfg.PingTimeout, func() {
		es.end(errors.New("socketio: no pong within socketio.ping_timeout"))
	})
	es.mu.Unlock()
	if err := es.sendEngine([]byte{byte(EnginePing)}); err != nil {
		es.end(err)
	}
}

// ponged takes the client's answer to a ping and arms the next.
func (es *engineSession) ponged() {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.pong == nil || es.ended {
		return
	}
	es.pong.Stop()
	es.pong = nil
	es.ping.Reset(es.srv.cfg.PingInterval)
}

// sendEngine sends one packet of the engine's own (a ping, an answer to
// a probe), whatever the backlog: they are few and small.
func (es *engineSession) sendEngine(packet []byte) error {
	es.mu.Lock()
	if es.ended {
		es.mu.Unlock()
		return nil
	}
	if ws := es.ws; ws != nil {
		es.mu.Unlock()
		return ws.send(wsFrame(nil, packet))
	}
	es.enqueueLocked([][]byte{packet})
	es.mu.Unlock()
	return nil
}

// enqueueLocked adds packets for the next poll; callers hold es.mu.
func (es *engineSession) enqueueLocked(packets [][]byte) {
	for _, p := range packets {
		es.queue = append(es.queue, p)
		es.queued += len(p) + 1
	}
	if es.wake != nil {
		close(es.wake)
		es.wake = nil
	}
}

// trySend hands packets to the client without waiting: it reports false,
// taking none, when the client is behind (its polls or its socket).
func (es *engineSession) trySend(packets [][]byte) (bool, error) {
	es.mu.Lock()
	if es.ended {
		es.mu.Unlock()
		return false, errEnded
	}
	if ws := es.ws; ws != nil {
		es.mu.Unlock()
		return ws.trySend(wsFrames(packets))
	}
	if es.queued > es.srv.cfg.MaxPayload {
		es.mu.Unlock()
		return false, nil
	}
	es.enqueueLocked(packets)
	es.mu.Unlock()
	return true, nil
}

var errEnded = errors.New("socketio: the session has ended")

// sendWait hands packets to the client, waiting, up to a poll's limit,
// while it is behind.
func (es *engineSession) sendWait(packets [][]byte) error {
	deadline := time.NewTimer(es.srv.pollLimit())
	defer deadline.Stop()
	for {
		es.mu.Lock()
		if es.ended {
			es.mu.Unlock()
			return errEnded
		}
		if ws := es.ws; ws != nil {
			es.mu.Unlock()
			return ws.sendWait(wsFrames(packets), deadline.C)
		}
		if es.queued <= es.srv.cfg.MaxPayload {
			es.enqueueLocked(packets)
			es.mu.Unlock()
			return nil
		}
		if es.room == nil {
			es.room = make(chan struct{})
		}
		room := es.room
		es.mu.Unlock()
		select {
		case <-room:
		case <-deadline.C:
			return errors.New("socketio: the client stopped polling")
		}
	}
}

// end ends the session once, for why: the timers stop, a waiting poll is
// answered with a close packet, the socket (if any) closes, and the hub
// hears that the connection is gone.
func (es *engineSession) end(why error) {
	es.mu.Lock()
	if es.ended {
		es.mu.Unlock()
		return
	}
	es.ended = true
	if es.ping != nil {
		es.ping.Stop()
	}
	if es.pong != nil {
		es.pong.Stop()
	}
	if es.wake != nil {
		close(es.wake)
		es.wake = nil
	}
	if es.room != nil {
		close(es.room)
		es.room = nil
	}
	ws, c, counted := es.ws, es.hub, es.counted
	es.counted = ""
	es.mu.Unlock()
	if counted != "" {
		es.srv.edge.CountConnections(counted, -1)
	}
	es.srv.log.Debug("socket.io session ended", "sid", es.sid, "why", why)
	if ws != nil {
		ws.close(session.Disconnect{Code: session.CloseNormal, Reason: "session ended"})
	}
	if c != nil {
		es.srv.hub.ReadEnded(c, why)
	}
	es.srv.forget(es)
}

// Connection gauge labels of the Socket.IO transports.
const (
	labelPolling   = "sio-polling"
	labelWebSocket = "sio-websocket"
)

// recount moves the session's hub connection to the label of its
// transport now; callers hold es.mu.
func (es *engineSession) recountLocked() {
	if es.hub == nil || es.ended {
		return
	}
	label := labelPolling
	if es.ws != nil {
		label = labelWebSocket
	}
	if label == es.counted {
		return
	}
	if es.counted != "" {
		es.srv.edge.CountConnections(es.counted, -1)
	}
	es.srv.edge.CountConnections(label, 1)
	es.counted = label
}

// cancelRelayedPoll ends a relayed poll whose client went away at the node
// that relayed it, taking nothing from the queue.
func (es *engineSession) cancelRelayedPoll() {
	es.mu.Lock()
	cancel := es.relayedPoll
	es.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

package socketio

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// transport is the hub's view of a session: session.Transport. The hub
// writes native frames as WebSocket frames (unmasked text frames, often
// several in one buffer); each payload becomes a Socket.IO packet: an
// answer to an emit's ack becomes the ack, any other JSON object with a
// string "type" T the event T, other JSON the event "message", and what is
// not JSON the event "message" with the text.
type transport struct{ es *engineSession }

var _ session.Transport = transport{}

// TryWrite takes all of p, or none of it while the client is behind.
func (t transport) TryWrite(p []byte) (int, error) {
	packets, err := t.es.translate(p)
	if err != nil {
		return 0, err
	}
	ok, err := t.es.trySend(packets)
	if !ok || err != nil {
		return 0, err
	}
	return len(p), nil
}

// Write sends every buffer, waiting while the client is behind.
func (t transport) Write(bufs [][]byte) error {
	for _, b := range bufs {
		packets, err := t.es.translate(b)
		if err != nil {
			return err
		}
		if err := t.es.sendWait(packets); err != nil {
			return err
		}
	}
	return nil
}

// Close ends the session from the hub's side: the client gets a
// DISCONNECT, then the socket's close frame (with d's code and reason) or,
// polling, the close packet.
func (t transport) Close(d session.Disconnect) error {
	es := t.es
	_ = es.sendEngine(AppendDisconnect(nil))
	es.mu.Lock()
	ws := es.ws
	es.mu.Unlock()
	if ws != nil {
		ws.close(d)
	}
	// The hub is the one closing: it still hears the end, as from a
	// socket whose read loop ended, to forget the connection.
	go es.end(d)
	return nil
}

// errNotFramed is a write that is not whole WebSocket text frames.
var errNotFramed = errors.New("socketio: the hub wrote something other than whole text frames")

// translate turns the WebSocket frames in p into Socket.IO packets.
func (es *engineSession) translate(p []byte) ([][]byte, error) {
	var marker []byte
	if m := es.marker.Load(); m != nil {
		marker = *m
	}
	var packets [][]byte
	for len(p) > 0 {
		payload, rest, ok := nextFrame(p)
		if !ok {
			return nil, errNotFramed
		}
		packets = append(packets, packetOf(payload, marker))
		p = rest
	}
	return packets, nil
}

// nextFrame splits the first server frame (FIN, text, unmasked) off p.
func nextFrame(p []byte) (payload, rest []byte, ok bool) {
	if len(p) < 2 || p[0] != 0x81 || p[1]&0x80 != 0 {
		return nil, nil, false
	}
	n, h := int(p[1]&0x7f), 2
	switch n {
	case 126:
		if len(p) < 4 {
			return nil, nil, false
		}
		n, h = int(binary.BigEndian.Uint16(p[2:])), 4
	case 127:
		if len(p) < 10 {
			return nil, nil, false
		}
		n64 := binary.BigEndian.Uint64(p[2:])
		if n64 > uint64(len(p)) {
			return nil, nil, false
		}
		n, h = int(n64), 10
	}
	if len(p) < h+n {
		return nil, nil, false
	}
	return p[h : h+n], p[h+n:], true
}

// packetOf is the Socket.IO packet of one payload for a client whose
// acks carry marker (nil before CONNECT).
func packetOf(payload, marker []byte) []byte {
	if marker != nil {
		if id, rest, ok := ackOf(payload, marker); ok {
			return AppendAck(nil, id, rest)
		}
	}
	if !json.Valid(payload) {
		return AppendEventText(nil, "message", payload)
	}
	var head struct {
		Type *string `json:"type"`
	}
	if payload[0] == '{' && json.Unmarshal(payload, &head) == nil && head.Type != nil && *head.Type != "" && !IsReservedEvent(*head.Type) {
		return AppendEvent(nil, *head.Type, payload)
	}
	return AppendEvent(nil, "message", payload)
}

// wsFrame appends payload as one unmasked WebSocket text frame.
func wsFrame(dst, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x81, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x81, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x81, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// wsFrames is packets as WebSocket text frames, one buffer.
func wsFrames(packets [][]byte) []byte {
	size := 0
	for _, p := range packets {
		size += len(p) + 10
	}
	b := make([]byte, 0, size)
	for _, p := range packets {
		b = wsFrame(b, p)
	}
	return b
}

// wsOut writes a session's frames to its WebSocket: without waiting while
// the socket takes them, else through one goroutine that drains a
// backlog with blocking writes. It serializes the calls to the socket's
// transport, as the transport requires.
type wsOut struct {
	es *engineSession
	t  session.Transport

	mu      sync.Mutex
	backlog [][]byte      // guarded by mu
	writing bool          // guarded by mu: drain owns the socket
	idle    chan struct{} // guarded by mu; closed when drain ends
	closed  bool          // guarded by mu
}

func newWSOut(es *engineSession, t session.Transport) *wsOut { return &wsOut{es: es, t: t} }

// trySend writes frames unless a backlog is being written; false: none
// taken.
func (o *wsOut) trySend(frames []byte) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false, errEnded
	}
	if o.writing {
		return false, nil
	}
	return true, o.writeLocked(frames)
}

// send writes frames, after any backlog.
func (o *wsOut) send(frames []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errEnded
	}
	if o.writing {
		o.backlog = append(o.backlog, frames)
		return nil
	}
	return o.writeLocked(frames)
}

// sendWait writes frames once the backlog is written, or fails when
// deadline fires first.
func (o *wsOut) sendWait(frames []byte, deadline <-chan time.Time) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return errEnded
		}
		if !o.writing {
			err := o.writeLocked(frames)
			o.mu.Unlock()
			return err
		}
		idle := o.idle
		o.mu.Unlock()
		select {
		case <-idle:
		case <-deadline:
			return errors.New("socketio: the client does not read")
		}
	}
}

// writeLocked writes frames without waiting; the part the socket does not
// take now becomes the backlog. Callers hold o.mu, with no backlog.
func (o *wsOut) writeLocked(frames []byte) error {
	n, err := o.t.TryWrite(frames)
	if err != nil {
		return err
	}
	if n < len(frames) {
		o.backlog = append(o.backlog, frames[n:])
		o.writing = true
		o.idle = make(chan struct{})
		go o.drain()
	}
	return nil
}

// drain writes the backlog with blocking writes until none is left.
func (o *wsOut) drain() {
	for {
		o.mu.Lock()
		bufs := o.backlog
		o.backlog = nil
		if len(bufs) == 0 || o.closed {
			o.writing = false
			close(o.idle)
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		if err := o.t.Write(bufs); err != nil {
			o.mu.Lock()
			o.writing = false
			close(o.idle)
			o.mu.Unlock()
			o.es.end(err)
			return
		}
	}
}

// close sends the close frame once the backlog is written (or after a
// while), then closes the socket. Only the first call does anything.
func (o *wsOut) close(d session.Disconnect) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	idle := o.idle
	writing := o.writing
	o.mu.Unlock()
	if writing {
		select {
		case <-idle:
		case <-time.After(2 * time.Second):
		}
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	o.mu.Unlock()
	_ = o.t.Close(d)
}

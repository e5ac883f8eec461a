package socketio

import (
	"bytes"
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
	es := t.es
	ws, err := es.webSocket()
	if err != nil {
		return 0, err
	}
	var ok bool
	if ws != nil {
		// As for a /ws member: one write of a buffer every member shares.
		var frames []byte
		if frames, err = es.translateFrames(p); err == nil {
			ok, err = ws.trySend(frames)
		}
	} else {
		var packets [][]byte
		if packets, err = es.translate(p); err == nil {
			ok, err = es.trySend(packets)
		}
	}
	if !ok || err != nil {
		return 0, err
	}
	return len(p), nil
}

// Write sends every buffer, waiting while the client is behind.
func (t transport) Write(bufs [][]byte) error {
	es := t.es
	for _, b := range bufs {
		ws, err := es.webSocket()
		if err != nil {
			return err
		}
		if ws != nil {
			frames, err := es.translateFrames(b)
			if err != nil {
				return err
			}
			// Bounded as engineSession.sendWait bounds its wait for the
			// socket.
			deadline := time.NewTimer(es.srv.pollLimit())
			err = ws.sendWait(frames, deadline.C)
			deadline.Stop()
			if err != nil {
				return err
			}
			continue
		}
		packets, err := es.translate(b)
		if err != nil {
			return err
		}
		if err := es.sendWait(packets); err != nil {
			return err
		}
	}
	return nil
}

// webSocket is the session's WebSocket, nil while it polls. A session
// that upgrades right after the call still gets its packets: trySend and
// sendWait find the socket themselves.
func (es *engineSession) webSocket() (*wsOut, error) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.ended {
		return nil, errEnded
	}
	return es.ws, nil
}

// Close ends the session from the hub's side: the socket's close frame
// (with d's code and reason) or, polling, the close packet. A client that
// is sent away on purpose (4002 and up: a backend disconnected it, its
// token expired) first gets a DISCONNECT, after which socket.io-client
// does not reconnect by itself; one whose node shuts down, or that was
// too slow or too fast, does, as a native client would.
func (t transport) Close(d session.Disconnect) error {
	es := t.es
	if d.Code >= 4002 && d.Code <= 4999 {
		_ = es.sendEngine(AppendDisconnect(nil))
	}
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

// translate turns the WebSocket frames in p into Socket.IO packets. They
// may be shared with other sessions: read-only.
func (es *engineSession) translate(p []byte) ([][]byte, error) {
	tr, err := es.translation(p)
	if err != nil {
		return nil, err
	}
	return tr.packets, nil
}

// translateFrames is translate's packets as WebSocket text frames, in one
// buffer that may be shared with other sessions: read-only.
func (es *engineSession) translateFrames(p []byte) ([]byte, error) {
	tr, err := es.translation(p)
	if err != nil {
		return nil, err
	}
	return tr.frames, nil
}

// translation is p, the hub's frames, for this session. Only the answers
// to its acks are its own, and they carry its marker: p without the
// marker reads the same for every session, and the translation of a
// buffer the hub hands to many (a channel's batch) is made once, in the
// cache.
func (es *engineSession) translation(p []byte) (*translation, error) {
	if m := es.marker.Load(); m != nil && holds(p, *m) {
		return translateFrames(p, *m)
	}
	return translations.get(p)
}

// holds is bytes.Contains(p, marker). Each member of a channel searches
// each batch, so the common case is made quick: the marker's \u001f has a
// backslash, which JSON text holds only in escapes, and most batches have
// none.
func holds(p, marker []byte) bool {
	if bytes.IndexByte(p, '\\') < 0 && bytes.IndexByte(marker, '\\') >= 0 {
		return false
	}
	return bytes.Contains(p, marker)
}

// translateFrames translates the WebSocket frames in p for a client
// whose acks carry marker (nil: none of p's frames answers an ack).
func translateFrames(p, marker []byte) (*translation, error) {
	tr := &translation{frames: make([]byte, 0, len(p)+len(p)/4)}
	var spans [][2]int // each packet's place in frames, which may move while it grows
	for len(p) > 0 {
		payload, rest, ok := nextFrame(p)
		if !ok {
			return nil, errNotFramed
		}
		packet := packetOf(payload, marker)
		tr.frames = wsFrame(tr.frames, packet)
		spans = append(spans, [2]int{len(tr.frames) - len(packet), len(tr.frames)})
		p = rest
	}
	tr.packets = make([][]byte, len(spans))
	for i, s := range spans {
		tr.packets[i] = tr.frames[s[0]:s[1]:s[1]]
	}
	return tr, nil
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
	if typ, ok := leadingType(payload); ok {
		// The hub's own frames all start so: no decoding to find the name.
		return AppendEvent(nil, typ, payload)
	}
	var head struct {
		Type *string `json:"type"`
	}
	if payload[0] == '{' && json.Unmarshal(payload, &head) == nil && head.Type != nil && *head.Type != "" && !IsReservedEvent(*head.Type) {
		return AppendEvent(nil, *head.Type, payload)
	}
	return AppendEvent(nil, "message", payload)
}

// seqPrefix starts a history channel's frames: the hub puts the message's
// seq first (PROTOCOL.md §6).
var seqPrefix = []byte(`{"seq":`)

// afterSeq is where the first member after a leading "seq":N, as the hub
// splices it, starts in payload; 0 when payload does not start so.
func afterSeq(payload []byte) int {
	if !bytes.HasPrefix(payload, seqPrefix) {
		return 0
	}
	i := len(seqPrefix)
	for i < len(payload) && payload[i] >= '0' && payload[i] <= '9' {
		i++
	}
	if i == len(seqPrefix) || i >= len(payload) || payload[i] != ',' {
		return 0
	}
	return i + 1
}

// typePrefix starts every frame the hub makes, and most backends' too.
var typePrefix = []byte(`{"type":"`)

// leadingType is the type of payload, valid JSON, when it starts with
// {"type":" (after the seq a history channel's frames start with) and a
// name with no escapes that is not reserved. (A key given twice is taken
// at its first.)
func leadingType(payload []byte) (string, bool) {
	var rest []byte
	if i := afterSeq(payload); i > 0 {
		// {"seq":N,"type":"T"…: a history channel's frame.
		if !bytes.HasPrefix(payload[i:], typePrefix[1:]) {
			return "", false
		}
		rest = payload[i+len(typePrefix)-1:]
	} else {
		if !bytes.HasPrefix(payload, typePrefix) {
			return "", false
		}
		rest = payload[len(typePrefix):]
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	typ := string(rest[:end])
	if IsReservedEvent(typ) {
		return "", false
	}
	return typ, true
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
	t session.Transport
	// fail hears of a write that failed: the session ends.
	fail func(error)

	mu      sync.Mutex
	prefix  []byte        // guarded by mu; frames that go out with the next write (see hold)
	backlog [][]byte      // guarded by mu
	writing bool          // guarded by mu: drain owns the socket
	idle    chan struct{} // guarded by mu; closed when drain ends
	closed  bool          // guarded by mu
}

// newWSOut is the writer of t for es; es nil: the caller sets fail.
func newWSOut(es *engineSession, t session.Transport) *wsOut {
	o := &wsOut{t: t}
	if es != nil {
		o.fail = es.end
	}
	return o
}

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

// hold keeps frames to go out with the next write, ahead of it: the
// CONNECT answer and the welcome then leave in one write.
func (o *wsOut) hold(frames []byte) {
	o.mu.Lock()
	o.prefix = append(o.prefix, frames...)
	o.mu.Unlock()
}

// send writes frames, after any backlog.
func (o *wsOut) send(frames []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errEnded
	}
	if o.writing {
		if o.prefix != nil {
			o.backlog, o.prefix = append(o.backlog, o.prefix), nil
		}
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
	if o.prefix != nil {
		// frames may be shared (see translation): a new buffer.
		frames = append(o.prefix, frames...)
		o.prefix = nil
	}
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
			o.fail(err)
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

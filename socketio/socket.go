package socketio

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/pushgrid/pushgrid/session"
)

// socket is the Socket.IO connection of a session: the hub's connection
// and what maps emits to native frames and answers back to acks.
type socket struct {
	c *session.Conn
	// marker starts the id of every native frame made from an emit with an
	// ack: `"\u001f<random>:` then the ack id. The hub echoes it in the
	// frame's answer, which then goes to the ack, not to an event; the
	// random part keeps anyone else from making a frame that passes for one.
	marker []byte
}

// socketPacket handles a Socket.IO packet from the client; callers hold
// es.recv.
func (es *engineSession) socketPacket(data []byte) error {
	p, err := DecodeSocket(data, es.srv.maxPacket)
	if err != nil {
		return err
	}
	if p.Namespace != DefaultNamespace {
		if p.Type == SocketConnect {
			return es.sendEngine(AppendConnectError(nil, p.Namespace, "Invalid namespace"))
		}
		return nil // packets of a namespace it could not join: nothing to do
	}
	switch p.Type {
	case SocketConnect:
		return es.connect(p.Data)
	case SocketDisconnect:
		return errClientClosed
	case SocketEvent:
		if es.sock == nil {
			return errors.New("socketio: an event before CONNECT")
		}
		es.event(p)
		return nil
	case SocketAck:
		return nil // pushgrid asks clients for no acks
	}
	return fmt.Errorf("socketio: packet type %c from a client", p.Type)
}

// connectAuth is the CONNECT packet's auth payload pushgrid reads.
type connectAuth struct {
	Token *string // "token"
	User  *string // "user"
}

// readConnectAuth reads data, a CONNECT packet's payload, as
// encoding/json would into connectAuth (keys matched without case, null
// as absent), without its reflection, whose deep stack every connect
// would otherwise grow: the payload is checked as every client payload
// is, then only its two string members are read. An empty payload is no
// auth.
func readConnectAuth(data []byte) (connectAuth, error) {
	var auth connectAuth
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return auth, nil
	}
	if err := checkJSON(data); err != nil {
		return auth, err
	}
	s := scanner{data: data}
	s.skipSpace()
	switch s.peek() {
	case 'n':
		return auth, nil // null
	case '{':
		s.i++
	default:
		return auth, errors.New("socketio: auth is not an object")
	}
	for {
		s.skipSpace()
		if s.peek() == '}' {
			return auth, nil
		}
		start := s.i
		_, _, _ = s.str() // checked: a key, ':', a value, then ',' or '}'
		key := unquote(data[start:s.i])
		s.skipSpace()
		s.i++ // :
		s.skipSpace()
		start = s.i
		_ = s.value(1)
		raw := data[start:s.i]
		var field **string
		switch {
		case strings.EqualFold(key, "token"):
			field = &auth.Token
		case strings.EqualFold(key, "user"):
			field = &auth.User
		}
		if field != nil {
			switch raw[0] {
			case '"':
				v := unquote(raw)
				*field = &v
			case 'n': // null
			default:
				return auth, fmt.Errorf("socketio: auth's %s is not a string", key)
			}
		}
		s.skipSpace()
		if s.peek() == ',' {
			s.i++
		}
	}
}

// connect admits the client as for /ws, with the CONNECT packet's auth
// payload: {"token":T} stands for a bearer token, {"user":U} for the user
// query parameter. A refusal is CONNECT_ERROR with the reason.
func (es *engineSession) connect(data []byte) error {
	if es.sock != nil {
		return errors.New("socketio: CONNECT twice")
	}
	auth, err := readConnectAuth(data)
	if err != nil {
		return es.sendEngine(AppendConnectError(nil, DefaultNamespace, "auth must be an object with a string token or user"))
	}
	r := es.req
	if auth.Token != nil || auth.User != nil {
		copied := *r
		r = &copied
	}
	if auth.Token != nil {
		r.Header = r.Header.Clone()
		r.Header.Set("Authorization", "Bearer "+*auth.Token)
	}
	if auth.User != nil {
		// First: the gateway reads a parameter's first value.
		u := *r.URL
		u.RawQuery = "user=" + url.QueryEscape(*auth.User) + "&" + u.RawQuery
		r.URL = &u
	}
	id, _, err := es.srv.edge.Admit(r)
	if err != nil {
		// The client may CONNECT again, with other credentials.
		return es.sendEngine(AppendConnectError(nil, DefaultNamespace, err.Error()))
	}
	es.req = nil // admitted: the handshake's head is not kept for the session's life
	sock := &socket{marker: []byte(`"\u001f` + rand.Text()[:12] + `:`)}
	es.marker.Store(&sock.marker)
	answer := AppendConnect(nil, rand.Text()[:20])
	es.mu.Lock()
	ws := es.ws
	es.mu.Unlock()
	if ws != nil {
		ws.hold(wsFrame(nil, answer)) // it leaves with the welcome
	} else if err := es.sendEngine(answer); err != nil {
		return err
	}
	// The hub's first frame, the welcome, becomes the event "welcome".
	c, err := es.srv.hub.Connect(transport{es}, id, es.remote)
	if err != nil {
		return err
	}
	sock.c = c
	es.sock = sock
	es.mu.Lock()
	ended := es.ended
	es.hub = c
	es.recountLocked()
	es.mu.Unlock()
	if ended {
		// The session ended while connecting: end did not see the hub's
		// connection, so it is told here.
		es.srv.hub.ReadEnded(c, errEnded)
	}
	return nil
}

// message is a native frame handed to the hub.
type message []byte

func (m message) Bytes() []byte { return m }
func (message) Close() error    { return nil }

// event turns an emit into a native frame (PROTOCOL.md §8) for the hub.
// The frame's answer goes to the ack, if the emit asked for one.
func (es *engineSession) event(p SocketPacket) {
	frame, err := nativeFrame(p, es.sock.marker)
	if err != nil {
		es.answerLocally(p, err)
		return
	}
	es.srv.hub.Enqueue(es.sock.c, message(frame))
}

// answerLocally answers an emit that makes no native frame with a
// bad_request error, to its ack or as the event "error".
func (es *engineSession) answerLocally(p SocketPacket, why error) {
	msg, _ := json.Marshal(why.Error())
	e := []byte(`{"type":"error","code":"bad_request","msg":` + string(msg) + `}`)
	var pkt []byte
	if p.HasAck {
		pkt = AppendAck(nil, p.AckID, e)
	} else {
		pkt = AppendEvent(nil, "error", e)
	}
	if _, err := es.trySend([][]byte{pkt}); err != nil {
		es.end(err)
	}
}

// nativeFrame builds the native frame of an emit:
//
//	emit("message", {"type":T,...})   → the object as it is
//	emit("join", C) / emit("leave", C) → {"type":"join","channel":C}
//	emit("chat", C, msg)               → {"type":"chat","channel":C,"msg":msg}
//	emit(T)                            → {"type":T}
//	emit(T, {...})                     → {"type":T,...}
//
// With an ack, the frame also gets an "id" that names it (see socket).
func nativeFrame(p SocketPacket, marker []byte) ([]byte, error) {
	var b []byte
	args := p.Args
	isString := func(i int) bool { return len(args) > i && len(args[i]) > 0 && args[i][0] == '"' }
	isObject := func(i int) bool { return len(args) > i && len(args[i]) > 0 && args[i][0] == '{' }
	switch {
	case p.Event == "message":
		if len(args) != 1 || !isObject(0) {
			return nil, errors.New(`emit("message", obj) takes one object`)
		}
		b = append(b, args[0]...)
	case (p.Event == session.TypeJoin || p.Event == session.TypeLeave) && isString(0):
		if len(args) != 1 {
			return nil, fmt.Errorf("emit(%q, channel) takes one channel", p.Event)
		}
		b = append(b, `{"type":`...)
		b = strconv.AppendQuote(b, p.Event)
		b = append(append(append(b, `,"channel":`...), args[0]...), '}')
	case p.Event == session.TypeChat && isString(0):
		if len(args) > 2 {
			return nil, errors.New(`emit("chat", channel, msg) takes a channel and a message`)
		}
		b = append(b, `{"type":"chat","channel":`...)
		b = append(b, args[0]...)
		if len(args) == 2 {
			b = append(append(b, `,"msg":`...), args[1]...)
		}
		b = append(b, '}')
	case len(args) == 0:
		b = appendTypeOnly(b, p.Event)
	case len(args) == 1 && isObject(0):
		b = appendTypeOnly(b, p.Event)
		if inner := bytes.TrimSpace(args[0][1 : len(args[0])-1]); len(inner) > 0 {
			b = append(append(b[:len(b)-1], ','), inner...)
			b = append(b, '}')
		}
	default:
		return nil, fmt.Errorf("emit(%q, ...) takes at most one object", p.Event)
	}
	if p.HasAck {
		// The id goes first after the opening brace: the frame stays one
		// object, and a client's own "id" is then a duplicate, refused.
		id := strconv.AppendUint(append([]byte(nil), marker...), p.AckID, 10)
		id = append(id, '"')
		b = append([]byte(`{"id":`+string(id)+`,`), b[1:]...)
	}
	return b, nil
}

// appendTypeOnly appends {"type":T}.
func appendTypeOnly(b []byte, typ string) []byte {
	b = append(b, `{"type":`...)
	quoted, _ := json.Marshal(typ)
	return append(append(b, quoted...), '}')
}

// ackOf reports whether payload, a frame for this session's client, is the
// answer to an emit with an ack, and which: its "id" starts with marker.
// It returns the payload without the id.
func ackOf(payload, marker []byte) (id uint64, rest []byte, ok bool) {
	i := bytes.Index(payload, marker)
	if i < 0 {
		return 0, nil, false
	}
	j := i + len(marker)
	k := j
	for k < len(payload) && payload[k] >= '0' && payload[k] <= '9' {
		k++
	}
	if k == j || k >= len(payload) || payload[k] != '"' {
		return 0, nil, false
	}
	id, err := strconv.ParseUint(string(payload[j:k]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	// Cut `"id":<marker>N"` and the comma on one side of it. The hub puts
	// an echoed id as a member of the top object, so this is the member.
	start := bytes.LastIndex(payload[:i], []byte(`"id":`))
	if start < 0 {
		return 0, nil, false
	}
	end := k + 1
	switch {
	case end < len(payload) && payload[end] == ',':
		end++
	case start > 0 && payload[start-1] == ',':
		start--
	}
	rest = append(append(make([]byte, 0, len(payload)), payload[:start]...), payload[end:]...)
	return id, rest, true
}

package socketio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

// Errors of the packet layer. Every refusal is, or wraps, one of them; each
// means the peer broke the protocol, and Engine.IO's answer to all of them
// is to close the session.
var (
	ErrTooLarge      = errors.New("socketio: packet larger than the maximum")
	ErrEmpty         = errors.New("socketio: empty packet")
	ErrPacketType    = errors.New("socketio: unknown packet type")
	ErrUTF8          = errors.New("socketio: text is not valid UTF-8")
	ErrBase64        = errors.New("socketio: binary packet is not valid base64")
	ErrBinary        = errors.New("socketio: binary packets are not supported")
	ErrNamespace     = errors.New("socketio: namespace is not UTF-8 text without control characters")
	ErrAckID         = errors.New("socketio: ack id out of range")
	ErrJSON          = errors.New("socketio: payload is not valid JSON")
	ErrDepth         = errors.New("socketio: payload nests arrays and objects too deeply")
	ErrDuplicateKey  = errors.New("socketio: a key appears twice in one object")
	ErrPayload       = errors.New("socketio: payload does not suit the packet type")
	ErrEventName     = errors.New("socketio: an event needs a string name first")
	ErrReservedEvent = errors.New("socketio: reserved event name")
	ErrTooManyArgs   = errors.New("socketio: too many arguments")
)

// EngineType is an Engine.IO v4 packet type. Its value is the character
// that encodes it on the wire.
type EngineType byte

// The Engine.IO packet types.
const (
	EngineOpen    EngineType = '0' // the handshake, server to client
	EngineClose   EngineType = '1'
	EnginePing    EngineType = '2' // the server's heartbeat; "2probe" from a client tests an upgrade
	EnginePong    EngineType = '3'
	EngineMessage EngineType = '4' // carries a Socket.IO packet
	EngineUpgrade EngineType = '5'
	EngineNoop    EngineType = '6' // ends a pending poll while the client upgrades
)

// Separator ends every packet but the last of a long-polling payload: the
// ASCII record separator, which valid JSON never holds unescaped.
const Separator = 0x1e

// binaryPrefix marks a binary packet in a long-polling payload (and in a
// text frame, which the reference parser reads the same way): 'b', then the
// bytes in base64; the packet type is always message.
const binaryPrefix = 'b'

// EnginePacket is one decoded Engine.IO packet.
type EnginePacket struct {
	Type EngineType
	// Data is what follows the type. For a text packet it is a part of the
	// decoded input, valid while the input is and not to be written to; for
	// a binary packet it is the decoded base64, a fresh slice.
	Data []byte
	// Binary marks a message of bytes, sent as 'b' and base64. pushgrid
	// carries text only, so the caller refuses these; they are decoded so
	// that it can tell them from garbage.
	Binary bool
}

// strictBase64 is padded standard base64 with zero trailing bits, the only
// form the reference encoders produce: each payload then has one encoding,
// and what decodes encodes back to the same bytes.
var strictBase64 = base64.StdEncoding.Strict()

// DecodeEngine decodes one Engine.IO packet from a WebSocket text frame. A
// frame longer than max bytes is refused before anything else is read.
// text is only read; the packet may alias it (see EnginePacket.Data).
func DecodeEngine(text []byte, max int) (EnginePacket, error) {
	if len(text) > max {
		return EnginePacket{}, ErrTooLarge
	}
	return decodeEngine(text)
}

// DecodePayload decodes the body of a long-polling POST: packets joined by
// Separator, none of them empty. A body longer than max bytes is refused
// before anything else is read. It hands the packets to fn in order and
// stops at the first one that does not decode, or at the first error fn
// returns, and returns that error. As in the reference server, fn has then
// handled the packets before the bad one; the caller closes the session.
// body is only read; the packets may alias it.
func DecodePayload(body []byte, max int, fn func(EnginePacket) error) error {
	if len(body) > max {
		return ErrTooLarge
	}
	for {
		end := bytes.IndexByte(body, Separator)
		text := body
		if end >= 0 {
			text = body[:end]
		}
		p, err := decodeEngine(text)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if end < 0 {
			return nil
		}
		body = body[end+1:]
	}
}

func decodeEngine(text []byte) (EnginePacket, error) {
	if len(text) == 0 {
		return EnginePacket{}, ErrEmpty
	}
	if text[0] == binaryPrefix {
		return decodeBinary(text[1:])
	}
	t := EngineType(text[0])
	if t < EngineOpen || t > EngineNoop {
		return EnginePacket{}, ErrPacketType
	}
	// Text packets are UTF-8 (the spec's "character encoding"); checking
	// here means that data echoed back, like a ping's, is valid in a text
	// frame.
	data := text[1:len(text):len(text)]
	if !utf8.Valid(data) {
		return EnginePacket{}, ErrUTF8
	}
	return EnginePacket{Type: t, Data: data}, nil
}

func decodeBinary(b64 []byte) (EnginePacket, error) {
	// encoding/base64 skips CR and LF; refusing them keeps one encoding
	// per payload.
	if bytes.ContainsAny(b64, "\r\n") {
		return EnginePacket{}, ErrBase64
	}
	data := make([]byte, strictBase64.DecodedLen(len(b64)))
	n, err := strictBase64.Decode(data, b64)
	if err != nil {
		return EnginePacket{}, ErrBase64
	}
	return EnginePacket{Type: EngineMessage, Data: data[:n:n], Binary: true}, nil
}

// AppendEngine appends the text packet of type t carrying data: one
// WebSocket text frame, or one packet of a polling payload. data must be
// UTF-8, and hold no Separator if the packet goes into a polling payload.
func AppendEngine(dst []byte, t EngineType, data []byte) []byte {
	return append(append(dst, byte(t)), data...)
}

// AppendPayload appends packets joined by Separator: the body of a
// long-polling response. Each is one whole encoded packet (from
// AppendEngine, AppendOpen or the Socket.IO appenders) and must hold no
// Separator, which the appenders of this package never write when the raw
// JSON they are given is valid.
func AppendPayload(dst []byte, packets [][]byte) []byte {
	for i, p := range packets {
		if i > 0 {
			dst = append(dst, Separator)
		}
		dst = append(dst, p...)
	}
	return dst
}

// Handshake is what the open packet tells a new session's client.
type Handshake struct {
	SID string
	// Upgrade offers the upgrade to WebSocket: true for a session opened
	// by long-polling, false for one opened on a WebSocket, which has
	// nothing to upgrade to.
	Upgrade      bool
	PingInterval time.Duration // sent in whole milliseconds
	PingTimeout  time.Duration // sent in whole milliseconds
	MaxPayload   int           // the bytes a client may send in one polling payload
}

// AppendOpen appends the open packet:
// 0{"sid":…,"upgrades":["websocket"],"pingInterval":…,"pingTimeout":…,"maxPayload":…},
// with "upgrades":[] when h.Upgrade is false.
func AppendOpen(dst []byte, h Handshake) []byte {
	dst = append(dst, byte(EngineOpen))
	dst = append(dst, `{"sid":`...)
	dst = jsonstr.Append(dst, h.SID)
	if h.Upgrade {
		dst = append(dst, `,"upgrades":["websocket"],"pingInterval":`...)
	} else {
		dst = append(dst, `,"upgrades":[],"pingInterval":`...)
	}
	dst = strconv.AppendInt(dst, h.PingInterval.Milliseconds(), 10)
	dst = append(dst, `,"pingTimeout":`...)
	dst = strconv.AppendInt(dst, h.PingTimeout.Milliseconds(), 10)
	dst = append(dst, `,"maxPayload":`...)
	dst = strconv.AppendInt(dst, int64(h.MaxPayload), 10)
	return append(dst, '}')
}

// SocketType is a Socket.IO v5 packet type. Its value is the character that
// encodes it on the wire.
type SocketType byte

// The Socket.IO packet types.
const (
	SocketConnect      SocketType = '0'
	SocketDisconnect   SocketType = '1'
	SocketEvent        SocketType = '2'
	SocketAck          SocketType = '3'
	SocketConnectError SocketType = '4'
	SocketBinaryEvent  SocketType = '5' // refused: ErrBinary
	SocketBinaryAck    SocketType = '6' // refused: ErrBinary
)

// DefaultNamespace is the namespace of a packet that names none, the only
// one pushgrid serves.
const DefaultNamespace = "/"

// MaxAckID is the largest ack id DecodeSocket accepts: 2^53-1, the largest
// integer a JavaScript number holds exactly. A JavaScript peer would read a
// larger one as another number, so its answer could not be matched.
const MaxAckID = 1<<53 - 1

// maxAckDigits is the number of digits of MaxAckID; a longer run of digits
// is refused before it is added up, even with leading zeros.
const maxAckDigits = 16

// MaxArgs is the most arguments DecodeSocket accepts in an EVENT (after the
// name) or an ACK. §8 reads at most two; the bound keeps a packet of many
// tiny arguments from costing many times its size in Args.
const MaxArgs = 32

// reservedEvents are the names socket.io-parser refuses in an EVENT,
// closing the connection, because its sockets use them themselves.
var reservedEvents = [...]string{
	"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
}

// IsReservedEvent reports whether name is an event name that Socket.IO keeps
// for itself. DecodeSocket refuses an EVENT with such a name, and so does
// the client's parser: the server must not emit one.
func IsReservedEvent(name string) bool {
	for _, r := range reservedEvents {
		if name == r {
			return true
		}
	}
	return false
}

// SocketPacket is one decoded Socket.IO packet. Data and Args alias the
// input it was decoded from: valid while that is, not to be written to;
// copy them to keep them longer.
type SocketPacket struct {
	Type      SocketType
	Namespace string // DefaultNamespace unless the packet names another
	AckID     uint64 // the ack id, when HasAck
	HasAck    bool
	// Data is the JSON payload as sent (checked, and without white space
	// before it), nil when there is none.
	Data json.RawMessage
	// Event is an EVENT's name, the first element of its array.
	Event string
	// Args are the other elements of an EVENT's array, or all those of an
	// ACK's, each one raw JSON value without the white space around it.
	Args []json.RawMessage
}

// DecodeSocket decodes one Socket.IO packet, the data of an Engine.IO
// message packet:
//
//	<type>[<namespace>,][<ack id>][<JSON payload>]
//
// A packet longer than max bytes is refused before anything else is read.
// Beyond what the reference parser refuses (unknown types, payloads that do
// not suit the type, reserved event names), it refuses binary packet types
// (ErrBinary), an event whose name is not a string (the reference also
// allows a number), an ACK without an id, ack ids above MaxAckID, more than
// MaxArgs arguments, a namespace with control characters (it is echoed in
// answers), and, since another reader would take them differently, white
// space before the payload (the reference parser reads it as part of the
// ack id), invalid UTF-8, arrays and objects nested more than 256 deep, and
// a key twice in one object, case ignored. data is only read.
func DecodeSocket(data []byte, max int) (SocketPacket, error) {
	if len(data) > max {
		return SocketPacket{}, ErrTooLarge
	}
	if len(data) == 0 {
		return SocketPacket{}, ErrEmpty
	}
	p := SocketPacket{Type: SocketType(data[0]), Namespace: DefaultNamespace}
	switch p.Type {
	case SocketConnect, SocketDisconnect, SocketEvent, SocketAck, SocketConnectError:
	case SocketBinaryEvent, SocketBinaryAck:
		return SocketPacket{}, ErrBinary
	default:
		return SocketPacket{}, ErrPacketType
	}
	rest := data[1:]

	// The namespace runs to the first comma, or to the end: the reference
	// reads "40/random" as a CONNECT to "/random".
	if len(rest) > 0 && rest[0] == '/' {
		ns := rest
		rest = nil
		if end := bytes.IndexByte(ns, ','); end >= 0 {
			ns, rest = ns[:end], ns[end+1:]
		}
		if !validNamespace(ns) {
			return SocketPacket{}, ErrNamespace
		}
		if len(ns) > 1 {
			p.Namespace = string(ns)
		}
	}

	digits := 0
	for digits < len(rest) && isDigit(rest[digits]) {
		digits++
	}
	if digits > 0 {
		if digits > maxAckDigits {
			return SocketPacket{}, ErrAckID
		}
		var id uint64
		for _, c := range rest[:digits] {
			id = id*10 + uint64(c-'0')
		}
		if id > MaxAckID {
			return SocketPacket{}, ErrAckID
		}
		p.AckID, p.HasAck = id, true
		rest = rest[digits:]
	}

	if len(rest) > 0 {
		if isSpace(rest[0]) {
			return SocketPacket{}, fmt.Errorf("%w: white space before the payload", ErrJSON)
		}
		p.Data = json.RawMessage(rest[:len(rest):len(rest)])
	}
	if err := p.checkPayload(); err != nil {
		return SocketPacket{}, err
	}
	return p, nil
}

// checkPayload checks p.Data against what p.Type allows, as socket.io-parser
// does, and fills in Event and Args.
func (p *SocketPacket) checkPayload() error {
	switch p.Type {
	case SocketConnect:
		if p.Data == nil {
			return nil
		}
		if p.Data[0] != '{' {
			return fmt.Errorf("%w: a CONNECT payload is an object", ErrPayload)
		}
		return checkJSON(p.Data)
	case SocketDisconnect:
		if p.Data != nil {
			return fmt.Errorf("%w: a DISCONNECT has no payload", ErrPayload)
		}
		return nil
	case SocketConnectError:
		if p.Data == nil || (p.Data[0] != '{' && p.Data[0] != '"') {
			return fmt.Errorf("%w: a CONNECT_ERROR payload is an object or a string", ErrPayload)
		}
		return checkJSON(p.Data)
	case SocketEvent:
		if p.Data == nil || p.Data[0] != '[' {
			return fmt.Errorf("%w: an EVENT payload is an array", ErrPayload)
		}
		elems, err := splitArray(p.Data, 1+MaxArgs)
		if err != nil {
			return err
		}
		if len(elems) == 0 || elems[0][0] != '"' {
			return ErrEventName
		}
		p.Event = unquote(elems[0])
		if IsReservedEvent(p.Event) {
			return fmt.Errorf("%w %q", ErrReservedEvent, p.Event)
		}
		p.Args = elems[1:]
		return nil
	default: // SocketAck
		if !p.HasAck {
			return fmt.Errorf("%w: an ACK needs the id of the event it answers", ErrPayload)
		}
		if p.Data == nil || p.Data[0] != '[' {
			return fmt.Errorf("%w: an ACK payload is an array", ErrPayload)
		}
		elems, err := splitArray(p.Data, MaxArgs)
		if err != nil {
			return err
		}
		p.Args = elems
		return nil
	}
}

// validNamespace reports whether ns can be echoed in a packet: UTF-8
// without control characters, Separator among them.
func validNamespace(ns []byte) bool {
	for _, c := range ns {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(ns)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// The Socket.IO appenders below write whole Engine.IO message packets (the
// leading '4' included), ready for a WebSocket text frame or a polling
// payload. They allocate nothing when dst has room. Raw JSON given to them
// must be valid (DecodeSocket's Args, or checked by the caller): it is
// copied as it is.

// AppendConnect appends the answer to a CONNECT to the default namespace:
// 40{"sid":…}.
func AppendConnect(dst []byte, sid string) []byte {
	dst = append(dst, byte(EngineMessage), byte(SocketConnect))
	dst = append(dst, `{"sid":`...)
	dst = jsonstr.Append(dst, sid)
	return append(dst, '}')
}

// AppendConnectError appends the refusal of a CONNECT: 44{"message":…} for
// the default namespace ("/" or ""), or 44/ns,{"message":…} for another,
// which must be one that DecodeSocket returned (no comma, no control
// character).
func AppendConnectError(dst []byte, namespace, message string) []byte {
	dst = append(dst, byte(EngineMessage), byte(SocketConnectError))
	if namespace != DefaultNamespace && namespace != "" {
		dst = append(dst, namespace...)
		dst = append(dst, ',')
	}
	dst = append(dst, `{"message":`...)
	dst = jsonstr.Append(dst, message)
	return append(dst, '}')
}

// AppendEvent appends an EVENT on the default namespace, without an ack id:
// 42["name",arg…].
func AppendEvent(dst []byte, name string, args ...json.RawMessage) []byte {
	dst = append(dst, byte(EngineMessage), byte(SocketEvent), '[')
	dst = jsonstr.Append(dst, name)
	for _, a := range args {
		dst = append(dst, ',')
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendEventText appends 42["name","text"]: an event whose one argument
// is text as a JSON string (invalid UTF-8 replaced by U+FFFD), which is how
// a payload that is not JSON reaches a Socket.IO client.
func AppendEventText(dst []byte, name string, text []byte) []byte {
	dst = append(dst, byte(EngineMessage), byte(SocketEvent), '[')
	dst = jsonstr.Append(dst, name)
	dst = append(dst, ',')
	dst = jsonstr.Append(dst, text)
	return append(dst, ']')
}

// AppendAck appends the answer to the event with ack id id:
// 43<id>[arg…].
func AppendAck(dst []byte, id uint64, args ...json.RawMessage) []byte {
	dst = append(dst, byte(EngineMessage), byte(SocketAck))
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, '[')
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendDisconnect appends the DISCONNECT from the default namespace: 41.
func AppendDisconnect(dst []byte) []byte {
	return append(dst, byte(EngineMessage), byte(SocketDisconnect))
}

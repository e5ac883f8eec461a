package session

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

// The client frame types the server handles itself; any other type goes to
// backends on <prefix>.recv.<type>.
const (
	TypeJoin     = "join"
	TypeChat     = "chat"
	TypeLeave    = "leave"
	TypePing     = "ping"
	TypeRefresh  = "refresh"
	TypePresence = "presence"
)

// Frame is one decoded client frame. Raw, Msg and ID alias the buffer the
// frame was decoded from: they are valid only during the call that received
// the frame; copy them to keep them.
type Frame struct {
	Type    string
	Channel string
	User    string
	Msg     json.RawMessage // any JSON value, nil when absent
	ID      json.RawMessage // a JSON string or number, nil when absent
	Token   string          // a refresh frame's token
	Raw     []byte          // the whole frame as the client sent it

	// A join's recovery on a history channel (PROTOCOL.md §6): the messages
	// after seq Since, or the last History messages.
	Recover Recover
	Since   uint64
	History uint64
}

// Recover is what a join asks of a history channel's store.
type Recover uint8

// Kinds of Recover.
const (
	RecoverNone    Recover = iota // a plain join
	RecoverSince                  // "since": the messages after Since
	RecoverHistory                // "history": the last History messages
)

// Server frames are built by appending to a byte slice: names are validated
// to a charset that needs no escaping, and message values are raw JSON that
// the decoder already checked, so only free text goes through appendString.

func appendField(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendID(b []byte, id json.RawMessage) []byte {
	if id == nil {
		return b
	}
	return append(appendField(b, "id"), id...)
}

// encodeWelcome builds {"type":"welcome","conn":C,"node":N,"user":U}.
func encodeWelcome(conn, node, user string) []byte {
	return encodeStrings("welcome", "conn", conn, "node", node, "user", user)
}

// encodeStrings builds {"type":T,"k1":V1,"k2":V2,"k3":V3}, the values
// JSON strings.
func encodeStrings(typ, k1, v1, k2, v2, k3, v3 string) []byte {
	b := make([]byte, 0, 48+len(typ)+len(v1)+len(v2)+len(v3))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	b = jsonstr.Append(appendField(b, k1), v1)
	b = jsonstr.Append(appendField(b, k2), v2)
	b = jsonstr.Append(appendField(b, k3), v3)
	return append(b, '}')
}

// encodeAnswer builds {"type":T,"channel":C[,"id":ID]} for joined and left.
func encodeAnswer(typ, channel string, id json.RawMessage) []byte {
	b := make([]byte, 0, 40+len(channel)+len(id))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	b = jsonstr.Append(appendField(b, "channel"), channel)
	b = appendID(b, id)
	return append(b, '}')
}

// encodeRefreshed builds {"type":"refreshed","exp":E} with the id of the
// refresh frame it answers.
func encodeRefreshed(exp int64, id json.RawMessage) []byte {
	b := strconv.AppendInt(append(make([]byte, 0, 48+len(id)), `{"type":"refreshed","exp":`...), exp, 10)
	return append(appendID(b, id), '}')
}

// encodeControl builds {"type":"control","channel":C,"user":U,"msg":M}.
func encodeControl(channel, user, msg string) []byte {
	return encodeStrings("control", "channel", channel, "user", user, "msg", msg)
}

// encodeChat builds {"type":"chat","channel":C,"user":U,"msg":V}; msg is raw
// JSON (null when the client sent none).
func encodeChat(channel, user string, msg json.RawMessage) []byte {
	if msg == nil {
		msg = json.RawMessage("null")
	}
	b := make([]byte, 0, 48+len(channel)+len(user)+len(msg))
	b = append(b, `{"type":"chat"`...)
	b = jsonstr.Append(appendField(b, "channel"), channel)
	b = jsonstr.Append(appendField(b, "user"), user)
	b = append(appendField(b, "msg"), msg...)
	return append(b, '}')
}

// encodeError builds {"type":"error","code":C,"msg":M[,"id":ID]}.
func encodeError(e *Error, id json.RawMessage) []byte {
	b := make([]byte, 0, 48+len(e.Code)+len(e.Msg)+len(id))
	b = append(b, `{"type":"error"`...)
	b = jsonstr.Append(appendField(b, "code"), string(e.Code))
	b = jsonstr.Append(appendField(b, "msg"), e.Msg)
	b = appendID(b, id)
	return append(b, '}')
}

// encodeReply builds {"type":"reply","id":ID,"msg":P}: a backend's reply
// payload goes in as JSON when it is valid JSON in UTF-8, else as a JSON
// string (with invalid UTF-8 replaced), so the frame is always valid.
func encodeReply(id json.RawMessage, payload []byte) []byte {
	b := make([]byte, 0, 40+len(id)+len(payload))
	b = append(b, `{"type":"reply"`...)
	b = appendID(b, id)
	b = appendField(b, "msg")
	if trimmed := bytes.TrimSpace(payload); len(trimmed) > 0 && json.Valid(trimmed) && utf8.Valid(trimmed) {
		b = append(b, trimmed...)
	} else {
		b = jsonstr.Append(b, string(payload))
	}
	return append(b, '}')
}

// framePong is {"type":"pong"} as a text frame, the answer to every ping
// without an id.
var framePong = textFrame(encodePong(nil))

// encodePong builds {"type":"pong"[,"id":ID]}.
func encodePong(id json.RawMessage) []byte {
	b := make([]byte, 0, 16+len(id)+6)
	b = append(b, `{"type":"pong"`...)
	b = appendID(b, id)
	return append(b, '}')
}

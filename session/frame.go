package session

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The client frame types the server handles itself; any other type goes to
// backends on <prefix>.recv.<type>.
const (
	TypeJoin  = "join"
	TypeChat  = "chat"
	TypeLeave = "leave"
	TypePing  = "ping"
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
	Raw     []byte          // the whole frame as the client sent it
}

// wireFrame keeps every field raw so a field of the wrong JSON type is
// reported by DecodeFrame with the right code instead of failing the whole
// decode.
type wireFrame struct {
	Type    json.RawMessage `json:"type"`
	Channel json.RawMessage `json:"channel"`
	User    json.RawMessage `json:"user"`
	Msg     json.RawMessage `json:"msg"`
	ID      json.RawMessage `json:"id"`
}

// DecodeFrame decodes and checks one client frame: a JSON object with a
// string "type", an optional string or number "id", and string "channel" and
// "user" where present. Channel and user names are not validated here; the
// frame's handler does that, since which fields a type needs depends on it.
// On error, the returned frame still carries the ID when it could be read.
func DecodeFrame(data []byte) (Frame, *Error) {
	f := Frame{Raw: data}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return f, errorf(CodeBadRequest, "a frame must be a JSON object")
	}
	w, flat := decodeFlat(data)
	if !flat {
		if err := json.Unmarshal(data, &w); err != nil {
			return f, errorf(CodeBadRequest, "a frame must be a JSON object")
		}
	}
	if w.ID != nil && !isNull(w.ID) {
		if c := w.ID[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
			return f, errorf(CodeBadRequest, "id must be a string or a number")
		}
		f.ID = w.ID
	}
	var ok bool
	if f.Type, ok = jsonString(w.Type); !ok || f.Type == "" {
		return f, errorf(CodeBadRequest, "a frame needs a string type")
	}
	if f.Channel, ok = jsonString(w.Channel); !ok && w.Channel != nil {
		return f, errorf(CodeBadChannel, "channel must be a string")
	}
	if f.User, ok = jsonString(w.User); !ok && w.User != nil {
		return f, errorf(CodeBadRequest, "user must be a string")
	}
	if w.Msg != nil {
		f.Msg = w.Msg
	}
	return f, nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// plain reports whether b is printable ASCII with no quote or backslash:
// such a JSON string means exactly its bytes.
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// decodeFlat decodes the common shape of a client frame without
// encoding/json's reflection: one object with no white space, whose keys
// are type, channel, user, msg and id, each at most once, and whose values
// are plain strings (see plain) or, for msg and id, unsigned integers. For
// anything else it reports false and the general decoder runs; for what it
// accepts, it gives what encoding/json gives (FuzzDecodeFrame checks).
func decodeFlat(data []byte) (w wireFrame, ok bool) {
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return w, false
	}
	i := 1
	if len(data) == 2 {
		return w, true
	}
	for {
		// "key":
		if data[i] != '"' {
			return w, false
		}
		end := bytesIndexByte(data, i+1, '"')
		if end < 0 || end+1 >= len(data) || data[end+1] != ':' {
			return w, false
		}
		key := string(data[i+1 : end])
		i = end + 2
		if i >= len(data) {
			return w, false
		}
		// value
		start := i
		numeric := false
		switch c := data[i]; {
		case c == '"':
			end = bytesIndexByte(data, i+1, '"')
			if end < 0 || !plain(data[i+1:end]) {
				return w, false
			}
			i = end + 1
		case c == '0':
			i++
			numeric = true
		case c >= '1' && c <= '9':
			for i < len(data) && data[i] >= '0' && data[i] <= '9' {
				i++
			}
			numeric = true
		default:
			return w, false
		}
		value := json.RawMessage(data[start:i])
		var field *json.RawMessage
		switch key {
		case "type":
			field = &w.Type
		case "channel":
			field = &w.Channel
		case "user":
			field = &w.User
		case "msg":
			field = &w.Msg
		case "id":
			field = &w.ID
		default:
			return w, false
		}
		if *field != nil || (numeric && key != "msg" && key != "id") {
			return w, false
		}
		*field = value
		if i >= len(data) {
			return w, false
		}
		switch data[i] {
		case ',':
			i++
			if i >= len(data) {
				return w, false
			}
		case '}':
			return w, i == len(data)-1
		default:
			return w, false
		}
	}
}

// bytesIndexByte is the index of c in b at or after from, or -1.
func bytesIndexByte(b []byte, from int, c byte) int {
	if from > len(b) {
		return -1
	}
	if j := bytes.IndexByte(b[from:], c); j >= 0 {
		return from + j
	}
	return -1
}

// jsonString unquotes a raw JSON string; ok is false for any other JSON value
// or when raw is absent.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if len(raw) >= 2 && raw[len(raw)-1] == '"' && plain(raw[1:len(raw)-1]) {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

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
	b := make([]byte, 0, 64+len(conn)+len(node)+len(user))
	b = append(b, `{"type":"welcome"`...)
	b = appendString(appendField(b, "conn"), conn)
	b = appendString(appendField(b, "node"), node)
	b = appendString(appendField(b, "user"), user)
	return append(b, '}')
}

// encodeAnswer builds {"type":T,"channel":C[,"id":ID]} for joined and left.
func encodeAnswer(typ, channel string, id json.RawMessage) []byte {
	b := make([]byte, 0, 40+len(channel)+len(id))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	b = appendString(appendField(b, "channel"), channel)
	b = appendID(b, id)
	return append(b, '}')
}

// encodeControl builds {"type":"control","channel":C,"user":U,"msg":M}.
func encodeControl(channel, user, msg string) []byte {
	b := make([]byte, 0, 64+len(channel)+len(user))
	b = append(b, `{"type":"control"`...)
	b = appendString(appendField(b, "channel"), channel)
	b = appendString(appendField(b, "user"), user)
	b = appendString(appendField(b, "msg"), msg)
	return append(b, '}')
}

// encodeChat builds {"type":"chat","channel":C,"user":U,"msg":V}; msg is raw
// JSON (null when the client sent none).
func encodeChat(channel, user string, msg json.RawMessage) []byte {
	if msg == nil {
		msg = json.RawMessage("null")
	}
	b := make([]byte, 0, 48+len(channel)+len(user)+len(msg))
	b = append(b, `{"type":"chat"`...)
	b = appendString(appendField(b, "channel"), channel)
	b = appendString(appendField(b, "user"), user)
	b = append(appendField(b, "msg"), msg...)
	return append(b, '}')
}

// encodeError builds {"type":"error","code":C,"msg":M[,"id":ID]}.
func encodeError(e *Error, id json.RawMessage) []byte {
	b := make([]byte, 0, 48+len(e.Code)+len(e.Msg)+len(id))
	b = append(b, `{"type":"error"`...)
	b = appendString(appendField(b, "code"), string(e.Code))
	b = appendString(appendField(b, "msg"), e.Msg)
	b = appendID(b, id)
	return append(b, '}')
}

// encodeReply builds {"type":"reply","id":ID,"msg":P}: a backend's reply
// payload goes in as JSON when it is valid JSON, else as a JSON string.
func encodeReply(id json.RawMessage, payload []byte) []byte {
	b := make([]byte, 0, 40+len(id)+len(payload))
	b = append(b, `{"type":"reply"`...)
	b = appendID(b, id)
	b = appendField(b, "msg")
	if trimmed := bytes.TrimSpace(payload); len(trimmed) > 0 && json.Valid(trimmed) {
		b = append(b, trimmed...)
	} else {
		b = appendString(b, string(payload))
	}
	return append(b, '}')
}

var framePong = []byte(`{"type":"pong"}`)

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

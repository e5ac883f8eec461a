package session

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The client frame decoder. It reads the frame once, front to back, and
// never writes to it: what it returns either points into the frame
// unchanged or is a fresh string. It checks the whole frame as JSON
// (RFC 8259 grammar, UTF-8) and refuses what readers disagree on: a key
// twice in one object, also as a case variant ("id" and "ID"), since
// encoding/json matches keys case-insensitively and keeps the last
// duplicate while other languages keep the first or fail; and, at the top,
// a case variant of a protocol key ("TYPE" is not "type"). So every value
// the server splices into a frame for others is valid JSON, and every
// backend reads the frame the way the server did.

// maxDepth bounds how deeply a frame's arrays and objects may nest; the
// decoder recurses once per level.
const maxDepth = 256

// foldMapAt is the number of keys in one object past which duplicates are
// found with a map instead of by comparing with every earlier key.
const foldMapAt = 16

// frameKeys are the top-level keys the protocol reads. A key that equals
// one of them but for case is refused, so that no reader takes it for the
// real one.
var frameKeys = []string{"type", "channel", "user", "msg", "id", "since", "history"}

// DecodeFrame decodes and checks one client frame: a JSON object with a
// string "type", an optional string or number "id", and string "channel" and
// "user" where present. Channel and user names are not validated here; the
// frame's handler does that, since which fields a type needs depends on it.
// On error, the returned frame still carries the ID when the frame was
// well-formed JSON with one "id", a string or a number, so the client
// learns which of its frames was refused. data is only read.
func DecodeFrame(data []byte) (Frame, *Error) {
	f := Frame{Raw: data}
	d := decoder{data: data}
	var top topFields
	d.skipSpace()
	if d.peek() != '{' {
		return f, errorf(CodeBadRequest, "a frame must be a JSON object")
	}
	if err := d.object(0, &top); err != nil {
		return f, err
	}
	d.skipSpace()
	if d.i != len(d.data) {
		return f, errorf(CodeBadRequest, "a frame must be one JSON object")
	}

	if id := top.id; id != nil && string(id) != "null" && !top.idTwice {
		if c := id[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
			return f, errorf(CodeBadRequest, "id must be a string or a number")
		}
		f.ID = json.RawMessage(id)
	}
	if d.ambiguous != nil {
		return f, d.ambiguous
	}
	var ok bool
	if f.Type, ok = frameType(top.typ); !ok || f.Type == "" {
		return f, errorf(CodeBadRequest, "a frame needs a string type")
	}
	if f.Channel, ok = unquote(top.channel); !ok && top.channel != nil {
		return f, errorf(CodeBadChannel, "channel must be a string")
	}
	if f.User, ok = unquote(top.user); !ok && top.user != nil {
		return f, errorf(CodeBadRequest, "user must be a string")
	}
	if top.msg != nil {
		f.Msg = json.RawMessage(top.msg)
	}
	if f.Type == TypeRefresh {
		if f.Token, ok = unquote(top.token); !ok {
			return f, errorf(CodeBadToken, "refresh needs a string token")
		}
	}
	if f.Type == TypeJoin && (top.since != nil || top.history != nil) {
		if top.since != nil && top.history != nil {
			return f, errorf(CodeBadRequest, "a join takes since or history, not both")
		}
		if top.since != nil {
			if f.Since, ok = counter(top.since); !ok {
				return f, errorf(CodeBadRequest, "since must be a whole number, the last seq seen")
			}
			f.Recover = RecoverSince
		} else {
			if f.History, ok = counter(top.history); !ok {
				return f, errorf(CodeBadRequest, "history must be a whole number of messages")
			}
			f.Recover = RecoverHistory
		}
	}
	return f, nil
}

// counter reads raw, a JSON number, as a whole number from 0 to 2^53 (what
// every JSON reader keeps exact).
func counter(raw []byte) (uint64, bool) {
	n, err := strconv.ParseUint(string(raw), 10, 64)
	return n, err == nil && n <= 1<<53
}

// topFields are the raw values of the top-level keys the protocol reads,
// each a part of the frame, nil when absent.
type topFields struct {
	typ, channel, user, msg, id []byte
	token                       []byte // read by refresh frames only
	since, history              []byte // read by join frames only
	idTwice                     bool   // "id" came twice (the frame is refused, and no id echoed)
}

func (t *topFields) field(key string) *[]byte {
	switch key {
	case "type":
		return &t.typ
	case "channel":
		return &t.channel
	case "user":
		return &t.user
	case "msg":
		return &t.msg
	case "id":
		return &t.id
	case "token":
		return &t.token
	case "since":
		return &t.since
	case "history":
		return &t.history
	}
	return nil
}

// frameType unquotes a type, without allocating for the types the server
// handles itself.
func frameType(raw []byte) (string, bool) {
	switch string(raw) {
	case `"join"`:
		return TypeJoin, true
	case `"chat"`:
		return TypeChat, true
	case `"leave"`:
		return TypeLeave, true
	case `"ping"`:
		return TypePing, true
	case `"refresh"`:
		return TypeRefresh, true
	case `"presence"`:
		return TypePresence, true
	}
	return unquote(raw)
}

// unquote returns the string a raw JSON string (already checked by the
// decoder) means; ok is false for any other value or when raw is nil.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if !hasByte(body, '\\') {
		return string(body), true
	}
	var b strings.Builder
	b.Grow(len(body))
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		switch e := body[i+1]; e {
		case 'u':
			r, n := escapedRune(body[i:])
			b.WriteRune(r)
			i += n
			continue
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		default: // " \ /
			b.WriteByte(e)
		}
		i += 2
	}
	return b.String(), true
}

// escapedRune decodes the \uXXXX escape at the start of s, and the low
// half that must follow a high surrogate; an unpaired surrogate is U+FFFD,
// as in encoding/json. It returns the rune and the bytes it took.
func escapedRune(s []byte) (rune, int) {
	r := hex4(s[2:6])
	if !utf16.IsSurrogate(r) {
		return r, 6
	}
	if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
		if pair := utf16.DecodeRune(r, hex4(s[8:12])); pair != unicode.ReplacementChar {
			return pair, 12
		}
	}
	return unicode.ReplacementChar, 6
}

func hex4(s []byte) rune {
	n, _ := strconv.ParseUint(string(s), 16, 32) // checked by the decoder
	return rune(n)
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// decoder walks one frame. It only reads data.
type decoder struct {
	data []byte
	i    int
	// ambiguous is the first key found twice, or a case variant of a
	// protocol key: the frame is refused, but read to its end, so that
	// its id can still be echoed.
	ambiguous *Error
}

// ambiguity records err unless an earlier one was recorded.
func (d *decoder) ambiguity(err *Error) {
	if d.ambiguous == nil {
		d.ambiguous = err
	}
}

var (
	errSyntax  = &Error{CodeBadRequest, "a frame must be valid JSON"}
	errUTF8    = &Error{CodeBadRequest, "a frame must be valid UTF-8"}
	errTooDeep = &Error{CodeBadRequest, "a frame may nest arrays and objects at most 256 deep"}
)

func (d *decoder) peek() byte {
	if d.i < len(d.data) {
		return d.data[d.i]
	}
	return 0
}

func (d *decoder) skipSpace() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value checks one JSON value at d.i and moves past it.
func (d *decoder) value(depth int) *Error {
	switch c := d.peek(); {
	case c == '{':
		return d.object(depth+1, nil)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		_, err := d.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return errSyntax
}

func (d *decoder) literal(word string) *Error {
	if len(d.data)-d.i < len(word) || string(d.data[d.i:d.i+len(word)]) != word {
		return errSyntax
	}
	d.i += len(word)
	return nil
}

// object checks the object at d.i, whose keys must be distinct even when
// case is ignored. top, when not nil, receives the protocol's fields: this
// is the frame itself.
func (d *decoder) object(depth int, top *topFields) *Error {
	if depth > maxDepth {
		return errTooDeep
	}
	d.i++               // {
	var first [8]string // most objects have few keys: no allocation for them
	keys := keySet{list: first[:0]}
	d.skipSpace()
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		d.skipSpace()
		if d.peek() != '"' {
			return errSyntax
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		var dup string
		var ok bool
		if keys, dup, ok = keys.add(key); !ok {
			if dup == key {
				d.ambiguity(errorf(CodeBadRequest, "key %q appears twice", key))
			} else {
				d.ambiguity(errorf(CodeBadRequest, "key %q appears twice, but for case (%q)", key, dup))
			}
		}
		d.skipSpace()
		if d.peek() != ':' {
			return errSyntax
		}
		d.i++
		d.skipSpace()
		start := d.i
		if err := d.value(depth); err != nil {
			return err
		}
		if top != nil {
			switch field := top.field(key); {
			case field != nil && *field == nil:
				*field = d.data[start:d.i]
			case field != nil:
				top.idTwice = top.idTwice || key == "id"
			case protocolKey(key) != "":
				d.ambiguity(errorf(CodeBadRequest, "key %q is not %q: keys are case-sensitive", key, protocolKey(key)))
				top.idTwice = top.idTwice || protocolKey(key) == "id"
			}
		}
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// protocolKey returns the protocol key that key equals but for case, or "".
func protocolKey(key string) string {
	for _, k := range frameKeys {
		if strings.EqualFold(k, key) {
			return k
		}
	}
	return ""
}

func (d *decoder) array(depth int) *Error {
	if depth > maxDepth {
		return errTooDeep
	}
	d.i++ // [
	d.skipSpace()
	if d.peek() == ']' {
		d.i++
		return nil
	}
	for {
		d.skipSpace()
		if err := d.value(depth); err != nil {
			return err
		}
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// str checks the string at d.i and returns what it means. A string without
// escapes, nearly every one, comes back without a copy: it shares the
// frame's bytes, so it must not outlive the decode (keys are compared and
// dropped; the values DecodeFrame returns are copied by unquote).
func (d *decoder) str() (string, *Error) {
	d.i++ // "
	start := d.i
	escaped := false
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			raw := d.data[start-1 : d.i+1]
			d.i++
			if escaped {
				s, _ := unquote(raw)
				return s, nil
			}
			return bytesString(raw[1 : len(raw)-1]), nil
		case c == '\\':
			if d.i+1 >= len(d.data) {
				return "", errSyntax
			}
			switch d.data[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if d.i+6 > len(d.data) || !isHex4(d.data[d.i+2:d.i+6]) {
					return "", errSyntax
				}
				d.i += 6
			default:
				return "", errSyntax
			}
			escaped = true
		case c < 0x20:
			return "", errSyntax
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, size := utf8.DecodeRune(d.data[d.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", errUTF8
			}
			d.i += size
		}
	}
	return "", errSyntax
}

// bytesString views b as a string without copying; b must not change
// while the string is in use.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (d *decoder) number() *Error {
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case c >= '1' && c <= '9':
		d.digits()
	default:
		return errSyntax
	}
	if d.peek() == '.' {
		d.i++
		if !d.digits() {
			return errSyntax
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		if !d.digits() {
			return errSyntax
		}
	}
	return nil
}

// digits moves past a run of digits and reports whether there was one.
func (d *decoder) digits() bool {
	start := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// keySet holds the keys of one object seen so far, to refuse one that
// equals an earlier key when case is ignored. Small objects compare with
// every earlier key; past foldMapAt keys a set of folded keys takes over,
// so a frame of thousands of keys costs linear time.
type keySet struct {
	list   []string            // the keys, while there are few
	folded map[string]struct{} // the folded keys, once there are many
}

// add returns the set with key added; if an earlier key equals it but for
// case (or exactly), it returns that key and false instead. (A value
// receiver, so that a set of few keys stays on the caller's stack.)
func (s keySet) add(key string) (keySet, string, bool) {
	if s.folded != nil {
		f := foldKey(key)
		if _, dup := s.folded[f]; dup {
			return s, f, false
		}
		s.folded[f] = struct{}{}
		return s, "", true
	}
	for _, k := range s.list {
		if strings.EqualFold(k, key) {
			return s, k, false
		}
	}
	s.list = append(s.list, key)
	if len(s.list) > foldMapAt {
		s.folded = make(map[string]struct{}, 2*len(s.list))
		for _, k := range s.list {
			s.folded[foldKey(k)] = struct{}{}
		}
		s.list = nil
	}
	return s, "", true
}

// foldKey maps every rune of s to the smallest rune of its case-folding
// orbit, so that strings.EqualFold(a, b) exactly when foldKey(a) ==
// foldKey(b).
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

package socketio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The JSON checks of Socket.IO payloads. They read a payload once, front to
// back, build no Go values and never write to it, and hold it to the rules
// session.DecodeFrame holds client frames to: the RFC 8259 grammar in
// UTF-8, bounded nesting, and no key twice in one object, also as a case
// variant ("id" and "ID"), because encoding/json matches keys without case
// and keeps the last duplicate while other readers keep the first or fail.
// An argument that passes is read the same way by every reader it is
// forwarded to.

// maxDepth bounds how deeply a payload's arrays and objects may nest, the
// EVENT or ACK array counting as the first level; the checks recurse once
// per level. It is session's bound, so depth refusals agree.
const maxDepth = 256

// foldMapAt is the number of keys in one object past which duplicates are
// found with a map of folded keys instead of by comparing with every
// earlier key, so that an object of thousands of keys costs linear time.
const foldMapAt = 16

// checkJSON checks that data is one JSON value, with nothing but white
// space after it.
func checkJSON(data []byte) error {
	s := scanner{data: data}
	if err := s.value(0); err != nil {
		return err
	}
	return s.end()
}

// splitArray checks that data, which starts with '[', is one JSON array
// with nothing but white space after it, and returns its elements, each
// without the white space around it and capped so that appending to one
// cannot write into data. It refuses more than limit elements.
func splitArray(data []byte, limit int) ([]json.RawMessage, error) {
	s := scanner{data: data, i: 1}
	s.skipSpace()
	if s.peek() == ']' {
		s.i++
		return nil, s.end()
	}
	// Room for what §8 sends, a name and up to three arguments, in one
	// allocation.
	elems := make([]json.RawMessage, 0, 4)
	for {
		if len(elems) == limit {
			return nil, ErrTooManyArgs
		}
		s.skipSpace()
		start := s.i
		if err := s.value(1); err != nil {
			return nil, err
		}
		elems = append(elems, json.RawMessage(data[start:s.i:s.i]))
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return elems, s.end()
		default:
			return nil, ErrJSON
		}
	}
}

// unquote returns the string that raw, a JSON string already checked,
// means.
func unquote(raw []byte) string {
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body)
	}
	// Escapes are rare in names and keys; encoding/json reads them as
	// every other Go reader of the payload will (an unpaired surrogate
	// is U+FFFD).
	var s string
	_ = json.Unmarshal(raw, &s) // cannot fail: raw was checked
	return s
}

// scanner walks one payload. It only reads data.
type scanner struct {
	data []byte
	i    int
}

func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) skipSpace() {
	for s.i < len(s.data) && isSpace(s.data[s.i]) {
		s.i++
	}
}

// end checks that only white space is left.
func (s *scanner) end() error {
	s.skipSpace()
	if s.i != len(s.data) {
		return ErrJSON
	}
	return nil
}

// value checks the JSON value at s.i, inside depth arrays and objects, and
// moves past it.
func (s *scanner) value(depth int) error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return ErrJSON
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return ErrJSON
	}
	s.i += len(word)
	return nil
}

func (s *scanner) array(depth int) error {
	if depth > maxDepth {
		return ErrDepth
	}
	s.i++ // [
	s.skipSpace()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		s.skipSpace()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return ErrJSON
		}
	}
}

// object checks the object at s.i, whose keys must differ even when case
// is ignored.
func (s *scanner) object(depth int) error {
	if depth > maxDepth {
		return ErrDepth
	}
	s.i++               // {
	var first [8][]byte // most objects have few keys: no allocation for them
	keys := keySet{list: first[:0]}
	s.skipSpace()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return ErrJSON
		}
		start := s.i
		key, escaped, err := s.str()
		if err != nil {
			return err
		}
		if escaped {
			key = []byte(unquote(s.data[start:s.i]))
		}
		var ok bool
		if keys, ok = keys.add(key); !ok {
			return fmt.Errorf("%w: %q", ErrDuplicateKey, key)
		}
		s.skipSpace()
		if s.peek() != ':' {
			return ErrJSON
		}
		s.i++
		s.skipSpace()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return ErrJSON
		}
	}
}

// str checks the string at s.i and moves past it. It returns the bytes
// between the quotes, a part of data, and whether they hold an escape.
func (s *scanner) str() (body []byte, escaped bool, err error) {
	s.i++ // "
	start := s.i
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return s.data[start : s.i-1], escaped, nil
		case c == '\\':
			if s.i+1 >= len(s.data) {
				return nil, false, ErrJSON
			}
			switch s.data[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.data) || !isHex4(s.data[s.i+2:s.i+6]) {
					return nil, false, ErrJSON
				}
				s.i += 6
			default:
				return nil, false, ErrJSON
			}
			escaped = true
		case c < 0x20: // Separator among them: it never splits a string
			return nil, false, ErrJSON
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, ErrUTF8
			}
			s.i += size
		}
	}
	return nil, false, ErrJSON
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return ErrJSON
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return ErrJSON
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return ErrJSON
		}
	}
	return nil
}

// digits moves past a run of digits and reports whether there was one.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && isDigit(s.data[s.i]) {
		s.i++
	}
	return s.i > start
}

// keySet holds the keys of one object seen so far. Small objects compare
// with every earlier key; past foldMapAt keys a set of folded keys takes
// over.
type keySet struct {
	list   [][]byte            // the keys, while there are few
	folded map[string]struct{} // the folded keys, once there are many
}

// add returns the set with key added, and false if an earlier key equals
// it, case ignored. (A value receiver, so that a set of few keys stays on
// the caller's stack.)
func (k keySet) add(key []byte) (keySet, bool) {
	if k.folded != nil {
		f := foldKey(key)
		if _, dup := k.folded[f]; dup {
			return k, false
		}
		k.folded[f] = struct{}{}
		return k, true
	}
	for _, old := range k.list {
		if bytes.EqualFold(old, key) {
			return k, false
		}
	}
	k.list = append(k.list, key)
	if len(k.list) > foldMapAt {
		k.folded = make(map[string]struct{}, 2*len(k.list))
		for _, old := range k.list {
			k.folded[foldKey(old)] = struct{}{}
		}
		k.list = nil
	}
	return k, true
}

// foldKey maps every rune of key to the smallest rune of its case-folding
// orbit, so that bytes.EqualFold(a, b) exactly when foldKey(a) ==
// foldKey(b).
func foldKey(key []byte) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range string(key) {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

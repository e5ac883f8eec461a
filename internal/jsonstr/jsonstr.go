// Package jsonstr writes JSON strings into byte slices without
// allocating: the one escaper of the server frames (session) and of the
// Socket.IO packets (socketio), which are built by appending.
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// Append appends s as a JSON string: quotes, backslashes and control
// characters (the Engine.IO record separator 0x1e among them, so that a
// string never splits a polling payload) escaped, and each byte of invalid
// UTF-8 replaced by U+FFFD, as encoding/json does. It takes names
// (strings) and payloads ([]byte) alike without converting, hence the type
// parameter.
func Append[T ~string | ~[]byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		if size := validRuneAt(s, i); size > 0 {
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, `\ufffd`...)
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validRuneAt returns the length of the valid UTF-8 encoding of a rune at
// s[i], or 0 if there is none.
func validRuneAt[T ~string | ~[]byte](s T, i int) int {
	var buf [utf8.UTFMax]byte
	n := copy(buf[:], s[i:])
	r, size := utf8.DecodeRune(buf[:n])
	if r == utf8.RuneError && size <= 1 {
		return 0
	}
	return size
}

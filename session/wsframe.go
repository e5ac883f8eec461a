package session

import "encoding/binary"

// WebSocket framing of server-to-client frames (RFC 6455 §5.2): unmasked,
// unfragmented. Encoding here rather than in the transport lets one encoded
// frame, or a run of them, be written unchanged to every member of a channel.

const (
	opText = 0x1
	opPong = 0xA
	finBit = 0x80
)

// wsHeaderLen is the length of the header appendFrame writes for n bytes.
func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// appendFrame appends one whole frame of the given opcode holding payload.
func appendFrame(dst []byte, opcode byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, finBit|opcode, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, finBit|opcode, 126, 0, 0)
		binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(n))
	default:
		dst = append(dst, finBit|opcode, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(dst[len(dst)-8:], uint64(n))
	}
	return append(dst, payload...)
}

// textFrame returns payload as one encoded text frame.
func textFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, wsHeaderLen(len(payload))+len(payload)), opText, payload)
}

// frameRest returns how many bytes from offset w of p, a run of whole
// frames as appendFrame writes them, belong to the frame byte w lies in: 0
// if w is on a frame boundary. If p does not parse, it is all of p from w,
// which never cuts a frame.
func frameRest(p []byte, w int) int {
	i := 0
	for i < w {
		rest := len(p) - i
		if rest < 2 {
			return len(p) - w
		}
		n, h := int(p[i+1]&0x7f), 2
		switch n {
		case 126:
			if rest < 4 {
				return len(p) - w
			}
			n, h = int(binary.BigEndian.Uint16(p[i+2:])), 4
		case 127:
			if rest < 10 {
				return len(p) - w
			}
			n64 := binary.BigEndian.Uint64(p[i+2:])
			if n64 > uint64(len(p)) {
				return len(p) - w
			}
			n, h = int(n64), 10
		}
		i += h + n
	}
	return min(i, len(p)) - w
}

// wsFrameHeader reads the header of the server frame p starts with: its
// length and the payload's size; 0, 0 when p holds no whole header.
func wsFrameHeader(p []byte) (header, size int) {
	if len(p) < 2 {
		return 0, 0
	}
	switch n := int(p[1] & 0x7f); n {
	case 126:
		if len(p) < 4 {
			return 0, 0
		}
		return 4, int(binary.BigEndian.Uint16(p[2:]))
	case 127:
		if len(p) < 10 {
			return 0, 0
		}
		return 10, int(binary.BigEndian.Uint64(p[2:]))
	default:
		return 2, n
	}
}

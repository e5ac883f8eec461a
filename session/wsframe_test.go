package session

import (
	"bytes"
	"testing"
)

func TestFrameRest(t *testing.T) {
	small := textFrame([]byte("hi"))                   // 2+2 bytes
	mid := textFrame(bytes.Repeat([]byte("m"), 300))   // 4+300
	big := textFrame(bytes.Repeat([]byte("b"), 70000)) // 10+70000
	run := append(append(append([]byte{}, small...), mid...), big...)
	for _, c := range []struct{ w, want int }{
		{1, 3},                // inside the first frame's header
		{4, 0},                // on the boundary after it
		{5, 303},              // inside the second frame's header
		{4 + 304, 0},          // on the boundary before the big frame
		{4 + 304 + 10, 70000}, // just past the big frame's header
		{len(run) - 1, 1},     // the last byte
	} {
		if got := frameRest(run, c.w); got != c.want {
			t.Errorf("frameRest(w=%d) = %d, want %d", c.w, got, c.want)
		}
	}
	// Bytes that do not parse: all of the rest, which never cuts a frame.
	bad := []byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'x'}
	if got := frameRest(bad, 3); got != len(bad)-3 {
		t.Errorf("frameRest of a bad run = %d, want %d", got, len(bad)-3)
	}
}

package gateway

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// TestFrameTimeout: a frame whose header announced more bytes than ever
// come is closed with 1008 "frame timeout" once FrameTimeout passes.
func TestFrameTimeout(t *testing.T) {
	g := startGatewayWith(t, Config{FrameTimeout: 300 * time.Millisecond}, session.Config{})
	c := dialWS(t, g, nil)
	c.handshake(t)
	c.write(t, pingFrames(1))
	c.readText(t, `"type":"pong"`)
	start := time.Now()
	c.write(t, append(frameHeader(0x81, 60000), 'x'))
	code, reason := c.readClose(t, 5*time.Second)
	if code != 1008 || reason != "frame timeout" {
		t.Fatalf("close %d %q, want 1008 \"frame timeout\"", code, reason)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before the frame timeout", d)
	}
}

// TestSlowFrameWithinTimeout: a frame that arrives in pieces, but within
// the frame timeout, is handled; so are the frames around it.
func TestSlowFrameWithinTimeout(t *testing.T) {
	g := startGatewayWith(t, Config{FrameTimeout: 2 * time.Second}, session.Config{})
	c := dialWS(t, g, nil)
	c.handshake(t)
	frame := clientFrame(1, paddedPing(5000))
	c.write(t, append(pingFrames(1), frame[:1]...)) // a whole frame, then one byte of the next
	c.readText(t, `"type":"pong"`)
	for i, piece := range [][]byte{frame[1:3], frame[3:9], frame[9:200], frame[200:]} {
		time.Sleep(20 * time.Millisecond) // each piece its own read
		if i == 3 {
			piece = append(piece, pingFrames(1)...)
		}
		c.write(t, piece)
	}
	c.readText(t, `"type":"pong"`)
	c.readText(t, `"type":"pong"`)
}

// TestPartialFramesHoldLittleMemory: a header announcing a large frame
// followed by one byte holds a buffer of about the bytes that came, not of
// the length announced, until the frame completes.
func TestPartialFramesHoldLittleMemory(t *testing.T) {
	g := startGatewayWith(t, Config{FrameTimeout: time.Minute}, session.Config{})
	const n = 100
	const size = 60000
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = dialWS(t, g, nil)
		clients[i].handshake(t)
	}
	var ms runtime.MemStats
	heap := func() int64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	base := heap()
	frame := clientFrame(1, paddedPing(size))
	for _, c := range clients {
		c.write(t, frame[:9]) // the header and one byte
	}
	// The old reader took a buffer of the announced size at once: 100 of
	// them would be over 6 MB. Give the node a moment to read every header.
	const limit = 2 << 20
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if grew := heap() - base; grew > limit {
			t.Fatalf("%d partial frames of %d bytes announced hold %d bytes", n, size, grew)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The frames still complete.
	clients[0].write(t, frame[9:])
	clients[0].readText(t, `"type":"pong"`)
}

// TestFramesPipelinedWithHandshake: frames sent right behind the upgrade
// request, before its answer, are framed like any other: whole ones are
// handled, and a partial one is timed, on the light path and through
// net/http alike.
func TestFramesPipelinedWithHandshake(t *testing.T) {
	for _, before := range []string{"", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"} {
		name := "light"
		if before != "" {
			name = "net/http"
		}
		t.Run(name, func(t *testing.T) {
			g := startGatewayWith(t, Config{FrameTimeout: 300 * time.Millisecond}, session.Config{})
			whole := clientFrame(1, paddedPing(300))
			c := dialWSAfter(t, g, before, append(pingFrames(2), whole[:20]...))
			c.handshake(t)
			c.readText(t, `"type":"pong"`)
			c.readText(t, `"type":"pong"`)
			c.write(t, whole[20:])
			c.readText(t, `"type":"pong"`)

			c = dialWSAfter(t, g, before, append(pingFrames(1), frameHeader(0x81, 1000)...))
			c.handshake(t)
			c.readText(t, `"type":"pong"`)
			if code, reason := c.readClose(t, 5*time.Second); code != 1008 || reason != "frame timeout" {
				t.Fatalf("close %d %q, want 1008 \"frame timeout\"", code, reason)
			}
		})
	}
}

// TestRefusedFramesAtOnce: frames the node refuses by their header alone
// are refused as soon as the header arrives, without waiting for their
// payload; a 64-bit length with its top bit set (which gws turned into a
// negative length and panicked on, taking the node down) is refused as too
// large.
func TestRefusedFramesAtOnce(t *testing.T) {
	g := startGatewayWith(t, Config{FrameTimeout: time.Minute}, session.Config{})
	for _, c := range []struct {
		name   string
		header []byte
		code   uint16
	}{
		{"larger than max_message_bytes", frameHeader(0x81, 1<<20), 1009},
		{"top bit of the length", frameHeader(0x81, 1<<63), 1009},
		{"all bits of the length", frameHeader(0x82, 1<<64-1), 1009},
		{"long control frame", frameHeader(0x89, 200), 1002},
		{"fragmented control frame", frameHeader(0x09, 10), 1002},
		{"unmasked", []byte{0x81, 126, 0xff, 0x00}, 1002},
		{"reserved bit", frameHeader(0xc1, 1000), 1002},
	} {
		t.Run(c.name, func(t *testing.T) {
			ws := dialWS(t, g, nil)
			ws.handshake(t)
			ws.write(t, c.header)
			if code, _ := ws.readClose(t, 5*time.Second); code != c.code {
				t.Fatalf("close %d, want %d", code, c.code)
			}
		})
	}
	// The node is still up.
	ws := dialWS(t, g, nil)
	ws.handshake(t)
}

// TestFragmentedMessageTimed: the frame timeout runs from the first byte
// of a fragmented message to its last fragment, so a message dribbled out
// one whole fragment at a time cannot hold its buffer forever.
func TestFragmentedMessageTimed(t *testing.T) {
	g := startGatewayWith(t, Config{FrameTimeout: 400 * time.Millisecond}, session.Config{})
	c := dialWS(t, g, nil)
	c.handshake(t)
	c.write(t, append(frameHeader(0x01, 1), maskPayload([]byte("{"))...)) // text, no FIN
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
				_, _ = c.conn.Write(append(frameHeader(0x00, 1), maskPayload([]byte(" "))...))
			}
		}
	}()
	if code, reason := c.readClose(t, 5*time.Second); code != 1008 || !strings.Contains(reason, "frame timeout") {
		t.Fatalf("close %d %q, want 1008 \"frame timeout\"", code, reason)
	}
}

// chunkConn is a socket whose reads return the chunks it holds, one per
// read at most, then EOF; it counts what it returned.
type chunkConn struct {
	net.Conn
	chunks [][]byte
	read   int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	c.read += n
	return n, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

// TestFrameReaderSplits: whatever the client's frames are split into by
// the network and however large gws's reads, the frame reader hands on
// the stream unchanged, and no byte of a frame before the whole frame has
// arrived.
func TestFrameReaderSplits(t *testing.T) {
	g := &Gateway{cfg: Config{FrameTimeout: time.Minute}, maxFrame: 1 << 16}
	rng := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 300; run++ {
		var stream []byte
		var ends []int // where each frame ends in stream
		for i := rng.IntN(20) + 1; i > 0; i-- {
			var fs [][]byte
			switch rng.IntN(5) {
			case 0: // a ping
				fs = [][]byte{clientFrame(9, bytes.Repeat([]byte("p"), rng.IntN(126)))}
			case 1: // a fragmented message, a ping between its fragments
				fs = [][]byte{
					append(frameHeader(0x01, 3), maskPayload([]byte("abc"))...),
					clientFrame(9, nil),
					append(frameHeader(0x80, 2), maskPayload([]byte("de"))...),
				}
			case 2: // a large one
				fs = [][]byte{clientFrame(1, bytes.Repeat([]byte("l"), rng.IntN(1<<16)))}
			default:
				fs = [][]byte{clientFrame(1, bytes.Repeat([]byte("s"), rng.IntN(300)))}
			}
			for _, f := range fs {
				stream = append(stream, f...)
				ends = append(ends, len(stream))
			}
		}
		// Split the stream at random points.
		var chunks [][]byte
		for rest := stream; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(2+rng.IntN(600)))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		conn := &chunkConn{chunks: chunks}
		sc := &socketConn{Conn: conn, g: g}
		var out []byte
		for {
			p := make([]byte, 1+rng.IntN(1000))
			n, err := sc.Read(p)
			out = append(out, p[:n]...)
			whole := 0 // how much of the stream has arrived in whole frames
			for _, e := range ends {
				if e <= conn.read {
					whole = e
				}
			}
			if len(out) > whole {
				t.Fatalf("run %d: handed on %d bytes when only %d were whole frames", run, len(out), whole)
			}
			if err != nil {
				break
			}
		}
		if !bytes.Equal(out, stream) {
			t.Fatalf("run %d: the stream changed: %d bytes in, %d out", run, len(stream), len(out))
		}
		if sc.buf != nil || sc.timing {
			t.Fatalf("run %d: after the last frame, a buffer of %d bytes is kept or a deadline set (%v)", run, cap(sc.buf), sc.timing)
		}
	}
}

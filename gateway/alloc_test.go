//go:build !race

// The race detector makes sync.Pool drop items at random and frames
// larger, so allocation counts and stack sizes are only checked without it.

package gateway

import (
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// TestTryWriteAllocatesNothing: a delivery to a connection is one write(2)
// and no allocation, whatever the number of members it is repeated for.
func TestTryWriteAllocatesNothing(t *testing.T) {
	near, far := tcpPair(t)
	go func() { _, _ = io.Copy(io.Discard, far) }()
	tr := newTransport(nil, near, nil, time.Second)
	frame := []byte("\x81\x05hello")
	allocs := testing.AllocsPerRun(1000, func() {
		if n, err := tr.TryWrite(frame); err != nil || n != len(frame) {
			t.Fatalf("TryWrite = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("TryWrite allocates %.1f times per call", allocs)
	}
}

// TestIdleConnectionStack: an idle connection's read goroutine waits in
// the frame reader with the 2 KiB stack it started with. Its frames sit
// below gws's and leave little room: a few dozen bytes more and every idle
// connection's stack is copied to 4 KiB.
func TestIdleConnectionStack(t *testing.T) {
	g := startGatewayWith(t, Config{}, session.Config{})
	stack := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.StackInuse)
	}
	const n = 200
	connect := func() {
		c := dialWS(t, g, nil)
		c.handshake(t)
		c.write(t, pingFrames(1)) // the read loop has read a frame, and waits again
		c.readText(t, `"type":"pong"`)
	}
	// One connection first: it starts the hub's worker pool, whose
	// goroutines grow their stacks once, however many connections follow.
	connect()
	base := stack()
	for i := 0; i < n; i++ {
		connect()
	}
	if per := (stack() - base) / n; per > 3<<10 {
		t.Fatalf("%d bytes of stack per idle connection, want 2 KiB", per)
	}
}

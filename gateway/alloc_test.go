//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only checked without it.

package gateway

import (
	"io"
	"testing"
	"time"
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

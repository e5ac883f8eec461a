package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// BenchmarkFanoutTCP is session's BenchmarkFanout over real sockets: one
// message to a channel of n members, each a gateway transport on a loopback
// TCP connection whose peer reads and counts. It includes the write(2) per
// member; allocations per op must not grow with n.
func BenchmarkFanoutTCP(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			h, err := session.New(session.Config{Node: "b"}, nullBus{}, nullBus{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			var received atomic.Int64
			for i := 0; i < n; i++ {
				near, far := tcpPair(b)
				go count(far, &received)
				c, err := h.Connect(newTransport(nil, near, nil, 10*time.Second), session.Identity{}, netip.Addr{})
				if err != nil {
					b.Fatal(err)
				}
				h.Receive(c, []byte(`{"type":"join","channel":"bench"}`))
			}
			payload := []byte(`{"type":"chat","channel":"bench","user":"u","msg":"0123456789012345678901234567"}`)
			frame := int64(len(payload) + 2) // a short text frame's header is 2 bytes
			// Wait for the welcomes and joins to arrive, then count from there.
			time.Sleep(100 * time.Millisecond)
			start := received.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.DeliverChannel("bench", payload)
				for received.Load()-start < int64(i+1)*int64(n)*frame {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// count reads c until it closes, adding what it read to n.
func count(c net.Conn, n *atomic.Int64) {
	buf := make([]byte, 64<<10)
	for {
		k, err := c.Read(buf)
		n.Add(int64(k))
		if err != nil {
			return
		}
	}
}

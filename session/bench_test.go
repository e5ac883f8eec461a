package session

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
)

// discard is a Transport whose socket always has room.
type discard struct{}

func (discard) TryWrite(p []byte) (int, error) { return len(p), nil }
func (discard) Write([][]byte) error           { return nil }
func (discard) Close(Disconnect) error         { return nil }

// quietBus subscribes and publishes nothing, so only the benchmark's own
// deliveries reach the members.
type quietBus struct{}

func (quietBus) Subscribe(string) error       { return nil }
func (quietBus) Unsubscribe(string)           {}
func (quietBus) Publish(string, []byte) error { return nil }

// BenchmarkFanout is the hot path: one message published to a channel with
// n members on this node, from the bus callback to every member's socket
// write. Allocations per op must not grow with n.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			h, err := New(Config{Node: "b"}, quietBus{}, &fakeBackend{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				c, _ := h.Connect(discard{}, Identity{}, netip.Addr{})
				h.Receive(c, []byte(`{"type":"join","channel":"bench"}`))
			}
			payload := []byte(`{"type":"chat","channel":"bench","user":"u","msg":"0123456789012345678901234567"}`)
			start := h.stats.delivered.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.DeliverChannel("bench", payload)
				// One message at a time: wait until it reached everyone.
				for h.stats.delivered.Load()-start < uint64((i+1)*n) {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

package broker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestChannelsShareGoroutines: a channel subscription must not cost a
// goroutine, or a node with many channels runs out of memory.
func TestChannelsShareGoroutines(t *testing.T) {
	b, rec := startNode(t, "gor")
	base := runtime.NumGoroutine()
	const n = 2000
	for i := 0; i < n; i++ {
		if err := b.Subscribe(fmt.Sprintf("room.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if added := runtime.NumGoroutine() - base; added >= 10 {
			return fmt.Errorf("%d channels added %d goroutines, want fewer than 10", n, added)
		}
		return nil
	})
	// They all still deliver.
	for _, i := range []int{0, 999, 1999} {
		if err := b.Publish(fmt.Sprintf("room.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		for _, i := range []int{0, 999, 1999} {
			if want := fmt.Sprintf("chan room.%d x", i); !rec.has(want) {
				return fmt.Errorf("no %q", want)
			}
		}
		return nil
	})
}

// orderRecorder keeps, per channel, the payloads in delivery order.
type orderRecorder struct {
	recorder
	mu  sync.Mutex
	seq map[string][]string // guarded by mu
}

func (r *orderRecorder) DeliverChannel(c string, p []byte) {
	r.mu.Lock()
	r.seq[c] = append(r.seq[c], string(p))
	r.mu.Unlock()
}

func (r *orderRecorder) count(c string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seq[c])
}

// TestChannelOrder: every channel's messages arrive, all and in order,
// through the one goroutine they share; once a channel's last member is
// gone, nothing more is delivered for it.
func TestChannelOrder(t *testing.T) {
	rec := &orderRecorder{seq: map[string][]string{}}
	b, err := New(Config{Node: "order", Listen: "127.0.0.1:0", Heartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })

	const channels, msgs = 64, 200
	var names []string
	for i := 0; i < channels; i++ {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	for _, c := range names {
		if err := b.Subscribe(c); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < msgs; i++ {
		for _, c := range names {
			if err := b.Publish(c, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, c := range names {
			if got := rec.count(c); got != msgs {
				return fmt.Errorf("channel %s: %d of %d delivered", c, got, msgs)
			}
		}
		return nil
	})
	rec.mu.Lock()
	for c, seq := range rec.seq {
		for i, p := range seq {
			if p != fmt.Sprint(i) {
				t.Fatalf("channel %s: message %d is %q", c, i, p)
			}
		}
	}
	rec.mu.Unlock()

	b.Unsubscribe("c0")
	if err := b.Publish("c0", []byte("late")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("c1", []byte("after")); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := rec.count("c1"); got != msgs+1 {
			return fmt.Errorf("c1: %d delivered", got)
		}
		return nil
	})
	if got := rec.count("c0"); got != msgs {
		t.Fatalf("c0 got a message after its last member left")
	}
}

// BenchmarkChannelMemory reports what one channel subscription costs a
// node in heap and goroutine stacks: the embedded server's subscription,
// the connection's and the broker's bookkeeping.
//
//	go test -run '^$' -bench ChannelMemory -benchtime 1x ./broker
func BenchmarkChannelMemory(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("channels=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var sum float64
			for i := 0; i < b.N; i++ {
				sum += channelMemory(b, n)
			}
			b.ReportMetric(sum/float64(b.N), "B/channel")
		})
	}
}

// channelMemory subscribes n distinct channels on a fresh broker and
// returns the heap and stack bytes they added, per channel.
func channelMemory(b *testing.B, n int) float64 {
	b.StopTimer()
	node, _ := startNodeBeat(b, fmt.Sprintf("mem%d", n), time.Minute)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("room-%07d", i)
	}
	before := memInUse()
	b.StartTimer()
	for _, c := range names {
		if err := node.Subscribe(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := node.Conn().Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	after := memInUse()
	runtime.KeepAlive(names)
	_ = node.Shutdown(context.Background())
	b.StartTimer()
	return float64(after-before) / float64(n)
}

func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc) + int64(m.StackInuse)
}

// countRecorder counts channel deliveries.
type countRecorder struct {
	recorder
	n atomic.Int64
}

func (r *countRecorder) DeliverChannel(string, []byte) { r.n.Add(1) }

// TestChannelBurstNotDropped: a burst from a backend as fast as NATS takes
// it reaches the receiver whole; nats.go drops nothing for the shared
// intake.
func TestChannelBurstNotDropped(t *testing.T) {
	rec := &countRecorder{}
	b, err := New(Config{Node: "burst", Listen: "127.0.0.1:0", Heartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	const channels, msgs = 50, 200_000
	for i := 0; i < channels; i++ {
		if err := b.Subscribe(fmt.Sprintf("burst.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	subjects := make([]string, channels)
	for i := range subjects {
		subjects[i] = b.Subjects().Channel(fmt.Sprintf("burst.%d", i))
	}
	payload := []byte("0123456789abcdef")
	for i := 0; i < msgs; i++ {
		if err := pub.Publish(subjects[i%channels], payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := rec.n.Load(); got != msgs {
			return fmt.Errorf("%d of %d delivered", got, msgs)
		}
		return nil
	})
}

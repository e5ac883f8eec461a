package bench

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWindowCountsItsOwnSeqs: each step counts the deliveries of its own
// seqs, exactly. As in a run, a step waits for its deliveries before the
// next one warms up, and the next window opens while the subscribers
// still read that warm-up. With one counter shared by the steps, reset at
// each start, and the window's bounds stored one after the other, a
// warm-up seq read between the two stores was counted in the new step (CI
// saw a step deliver one message more than it expected).
func TestWindowCountsItsOwnSeqs(t *testing.T) {
	const (
		steps    = 10000
		warmup   = 50 // seqs published before each step's window opens
		measured = 10 // seqs each window measures
	)
	r := &run{ring: make([]atomic.Int32, ringSize), want: []int32{1}, done: make(chan struct{}, 1)}
	seqs := make(chan int64, 4096)
	var wg sync.WaitGroup
	for range 2 {
		s := &subscriber{r: r}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				s.receive(makePayload(seq, minPayload))
			}
		}()
	}
	windows := make([]*window, steps)
	var seq int64
	for k := range windows {
		for range warmup {
			seqs <- seq
			seq++
		}
		windows[k] = r.openWindow(seq)
		for range measured {
			seqs <- seq
			seq++
		}
		windows[k].to.Store(seq)
		// As a step settles: until its deliveries are in, bounded.
		for deadline := time.Now().Add(10 * time.Second); windows[k].delivered.Load() < measured && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		if got := windows[k].delivered.Load(); got != measured {
			t.Fatalf("step %d counted %d deliveries of its %d seqs", k, got, measured)
		}
	}
	close(seqs)
	wg.Wait()
	for k, w := range windows {
		if got := w.delivered.Load(); got != measured {
			t.Fatalf("step %d ended with %d deliveries of its %d seqs counted", k, got, measured)
		}
	}
}

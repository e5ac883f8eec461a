package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Recovery (Config.Recover): the subscribers of history channels go away,
// Recover messages are published to each channel meanwhile, and every
// subscriber comes back, joining with since = the last seq it saw
// (PROTOCOL.md §6): how long until every one has every message it missed,
// once.

// Recovery is the result of the recovery phase.
type Recovery struct {
	Clients    int     `json:"clients"`    // subscribers that came back
	Missed     int     `json:"missed"`     // messages each missed
	Seconds    float64 `json:"seconds"`    // from the first reconnect to the last missed message received
	Recovered  int     `json:"recovered"`  // joins answered recovered:true
	Complete   int     `json:"complete"`   // subscribers that got every missed message
	Duplicates int64   `json:"duplicates"` // missed messages received twice
	Errors     int     `json:"errors"`     // reconnects or joins that failed
	Timeout    bool    `json:"timeout"`    // not all complete within Config.Timeout
}

// recovering is one subscriber's recovery.
type recovering struct {
	mu        sync.Mutex
	seen      map[int64]bool // the run's message numbers received
	done      chan struct{}  // closed once every missed one came
	want      int
	recovered atomic.Bool
}

// recover runs the recovery phase on the joined subscribers.
func (r *run) recover(ctx context.Context, nc *nats.Conn, res *Result) error {
	cfg := r.cfg
	// One message first, which every subscriber sees: what it resumes from.
	publish := func(c, k int) (uint64, error) {
		req, _ := json.Marshal(map[string]any{"channel": channelName(c), "id": fmt.Sprintf("bench-recover-%d-%d-%d", time.Now().UnixNano(), c, k),
			"data": json.RawMessage(makePayload(int64(k), cfg.Size))})
		// A node that just started may not have its history streams yet:
		// it answers unavailable for a moment.
		for wait := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			m, err := nc.RequestWithContext(ctx, cfg.Prefix+".api.publish", req)
			if err != nil {
				return 0, fmt.Errorf("recover: publish: %w", err)
			}
			var out struct {
				Seq   uint64 `json:"seq"`
				Error string `json:"error"`
			}
			_ = json.Unmarshal(m.Data, &out)
			switch {
			case out.Seq > 0:
				return out.Seq, nil
			case strings.HasPrefix(out.Error, "unavailable") && time.Now().Before(wait):
				continue
			}
			return 0, fmt.Errorf("recover: %s is not a history channel of the server (%s)", channelName(c), m.Data)
		}
	}
	marks := make([]uint64, cfg.Channels)
	for c := range marks {
		seq, err := publish(c, 0)
		if err != nil {
			return err
		}
		marks[c] = seq
	}
	seen := time.Now().Add(10 * time.Second)
	for _, s := range r.subs {
		for s != nil && s.lastStored.Load() < int64(marks[s.channel]) && time.Now().Before(seen) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	type back struct {
		i     int
		since int64
	}
	var backs []back
	for i, s := range r.subs {
		if s != nil {
			backs = append(backs, back{i, s.lastStored.Load()})
		}
	}
	r.closeAll()
	r.subs = make([]*subscriber, cfg.Subs)
	time.Sleep(500 * time.Millisecond) // the server sees them go

	// The missed messages, stored before anyone comes back.
	for c := 0; c < cfg.Channels; c++ {
		for k := 1; k <= cfg.Recover; k++ {
			if _, err := publish(c, k); err != nil {
				return err
			}
		}
	}

	rec := &Recovery{Missed: cfg.Recover}
	res.Recovery = rec
	start := time.Now()
	var mu sync.Mutex
	work := make(chan back)
	var wg sync.WaitGroup
	var states []*recovering
	for w := 0; w < cfg.Dialers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				st := &recovering{seen: make(map[int64]bool, cfg.Recover), done: make(chan struct{}), want: cfg.Recover}
				s, err := r.dialSince(ctx, b.i, b.since, st)
				mu.Lock()
				if err != nil {
					rec.Errors++
				} else {
					r.subs[b.i] = s
					states = append(states, st)
				}
				mu.Unlock()
			}
		}()
	}
	for _, b := range backs {
		work <- b
	}
	close(work)
	wg.Wait()
	deadline := time.After(cfg.Timeout)
	for _, st := range states {
		select {
		case <-st.done:
		case <-deadline:
			rec.Timeout = true
		case <-ctx.Done():
			rec.Timeout = true
		}
		if rec.Timeout {
			break
		}
	}
	rec.Seconds = time.Since(start).Seconds()
	for _, st := range states {
		rec.Clients++
		if st.recovered.Load() {
			rec.Recovered++
		}
		st.mu.Lock()
		if len(st.seen) == st.want {
			rec.Complete++
		}
		st.mu.Unlock()
	}
	if rec.Timeout {
		return fmt.Errorf("recover: %d of %d subscribers had every missed message within %v", rec.Complete, rec.Clients, cfg.Timeout)
	}
	return nil
}

// take counts one run message of a recovering subscriber.
func (st *recovering) take(n int64, dups *atomic.Int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.seen[n] {
		dups.Add(1)
		return
	}
	st.seen[n] = true
	if len(st.seen) == st.want {
		close(st.done)
	}
}

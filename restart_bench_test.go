package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// BenchmarkRestartStorm measures an in-place restart of a node that holds
// 10,000 clients (RESTART_CLIENTS) which all come back at once on 1012, as
// pushgrid.js does: the time from SIGHUP to the new process serving and
// to the old one's exit, refused and failed connects, and the reconnect
// storm's peak connects/s (over 100 ms windows) as gateway.drain spreads
// it. It runs once whatever b.N is:
//
//	go test -run '^$' -bench RestartStorm -benchtime 1x .
func BenchmarkRestartStorm(b *testing.B) {
	for _, drain := range []time.Duration{5 * time.Second, time.Second} {
		b.Run("drain="+drain.String(), func(b *testing.B) {
			for range b.N {
				restartStorm(b, drain, 10000)
			}
		})
	}
}

// stormClient is one of the clients of the storm: it connects again at
// once when the server closes it with 1012.
type stormClient struct {
	gws.BuiltinEventHandler
	s      *storm
	closed chan uint16
}

func (c *stormClient) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	code := uint16(0)
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.closed <- code
}

type storm struct {
	url      string
	mu       sync.Mutex
	connects map[int64]int // connects per 100 ms window since start
	start    time.Time
	refused  atomic.Int64
	failed   atomic.Int64
	back     atomic.Int64 // reconnected after a 1012
	lastBack atomic.Int64 // ns since start
}

func (s *storm) connect() (*gws.Conn, *stormClient, error) {
	c := &stormClient{s: s, closed: make(chan uint16, 1)}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{Addr: s.url, HandshakeTimeout: 30 * time.Second})
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			s.refused.Add(1)
		}
		s.failed.Add(1)
		return nil, nil, err
	}
	since := time.Since(s.start)
	s.mu.Lock()
	s.connects[int64(since/(100*time.Millisecond))]++
	s.mu.Unlock()
	go conn.ReadLoop()
	return conn, c, nil
}

// run keeps one client connected until stop: connected once, then again
// after each 1012.
func (s *storm) run(stop <-chan struct{}, ready *sync.WaitGroup) {
	conn, c, err := s.connect()
	ready.Done()
	if err != nil {
		return
	}
	for {
		select {
		case <-stop:
			_ = conn.WriteClose(1000, nil)
			return
		case code := <-c.closed:
			if code != 1012 {
				return
			}
			if conn, c, err = s.connect(); err != nil {
				return
			}
			s.back.Add(1)
			s.lastBack.Store(int64(time.Since(s.start)))
		}
	}
}

func restartStorm(b *testing.B, drain time.Duration, clients int) {
	p := startRestartable(b, "storm", nil, "--drain", drain.String(), "--max-connections", "20000")
	s := &storm{url: p.ws, connects: map[int64]int{}, start: time.Now()}
	stop := make(chan struct{})
	var ready, done sync.WaitGroup
	for range clients {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			s.run(stop, &ready)
		}()
		time.Sleep(100 * time.Microsecond) // not one SYN burst
	}
	ready.Wait()
	defer func() {
		close(stop)
		done.Wait()
	}()
	if n := s.failed.Load(); n > 0 {
		b.Fatalf("%d of %d clients failed to connect before the restart", n, clients)
	}
	time.Sleep(time.Second)
	s.mu.Lock()
	s.connects, s.start = map[int64]int{}, time.Now()
	s.mu.Unlock()
	hup := s.start
	if err := syscall.Kill(p.first.Process.Pid, syscall.SIGHUP); err != nil {
		b.Fatal(err)
	}
	p.awaitStarted(2, 30*time.Second)
	serving := time.Since(hup)
	if err := p.awaitExit(drain + 30*time.Second); err != nil {
		b.Errorf("the old process exited with %v", err)
	}
	exited := time.Since(hup)
	deadline := time.Now().Add(drain + 10*time.Second)
	for s.back.Load() < int64(clients) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	peak := 0
	for _, n := range s.connects {
		peak = max(peak, n)
	}
	s.mu.Unlock()
	b.ReportMetric(float64(serving.Milliseconds()), "ms-to-new-serving")
	b.ReportMetric(float64(exited.Milliseconds()), "ms-to-old-exit")
	b.ReportMetric(float64(s.refused.Load()), "refused")
	b.ReportMetric(float64(s.failed.Load()), "failed")
	b.ReportMetric(float64(peak*10), "peak-connects/s")
	b.ReportMetric(float64(s.back.Load()), "back")
	b.ReportMetric(float64(time.Duration(s.lastBack.Load()).Milliseconds()), "ms-last-back")
	fmt.Printf("restart storm, %d clients, drain %v: new process serving after %v, old one gone after %v; %d of %d back, the last %v after the SIGHUP; %d refused, %d failed; peak %d connects/s\n",
		clients, drain, serving.Round(time.Millisecond), exited.Round(time.Millisecond), s.back.Load(), clients,
		time.Duration(s.lastBack.Load()).Round(time.Millisecond), s.refused.Load(), s.failed.Load(), peak*10)
}

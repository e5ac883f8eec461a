package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// BenchmarkRemoteRoster measures what a node spends on the other nodes'
// connections (their rosters, issue 14: every node keeps every other
// node's connections with their users and channels), for the capacity
// estimate of a full mesh: the resident memory of node B before and after
// node A takes 10,000 clients, each in a channel of its own.
//
//	go test -run '^$' -bench RemoteRoster -benchtime 1x .
func BenchmarkRemoteRoster(b *testing.B) {
	for range b.N {
		a := startRestartable(b, "a", nil, "--max-connections", "20000")
		other := startRestartable(b, "b", []string{a.cluster})
		time.Sleep(3 * time.Second)
		before := rss(b, otherPID(b, other))
		const clients = 10000
		conns := make([]*gws.Conn, 0, clients)
		for i := range clients {
			ev := &wsEvents{frames: make(chan frame, 64), closed: make(chan error, 1)}
			conn, _, err := gws.NewClient(ev, &gws.ClientOption{Addr: fmt.Sprintf("%s?user=u%d", a.ws, i)})
			if err != nil {
				b.Fatal(err)
			}
			go conn.ReadLoop()
			_ = conn.WriteString(fmt.Sprintf(`{"type":"join","channel":"room.%d"}`, i))
			conns = append(conns, conn)
			go func() {
				for range ev.frames {
				}
			}()
		}
		time.Sleep(5 * time.Second) // the deltas reach b; its heap settles
		after := rss(b, otherPID(b, other))
		per := float64(after-before) / clients
		b.ReportMetric(per, "B/remote-conn")
		fmt.Printf("remote roster: node b's RSS %d → %d KiB with 10,000 connections on node a: %.0f B per remote connection\n", before/1024, after/1024, per)
		for _, c := range conns {
			_ = c.WriteClose(1000, nil)
		}
	}
}

func otherPID(b *testing.B, r *restartable) int {
	pid, err := readPID(r.pidFile)
	if err != nil {
		b.Fatal(err)
	}
	return pid
}

// rss is a process's resident memory in bytes.
func rss(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	b.Fatalf("no VmRSS for %d", pid)
	return 0
}

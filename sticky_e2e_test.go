package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// workerOf asks the gateway, over a fresh connection from local address
// src, which worker listener accepted it.
func workerOf(t testing.TB, base, src string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	w := resp.Header.Get("X-Pushgrid-Worker")
	if w == "" {
		t.Fatal("no X-Pushgrid-Worker header")
	}
	return w
}

// TestStickyWorkers: with sticky = "ip" every connection from one client IP
// lands on the same worker; with "none" they spread.
func TestStickyWorkers(t *testing.T) {
	sources := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}
	const tries = 12

	steered := startTestNode(t, "st1", nil, "--workers", "4", "--sticky", "ip")
	used := map[string]bool{}
	for _, src := range sources {
		first := workerOf(t, steered.http, src)
		used[first] = true
		for i := 1; i < tries; i++ {
			if w := workerOf(t, steered.http, src); w != first {
				t.Fatalf("%s landed on workers %s and %s", src, first, w)
			}
		}
	}
	if len(used) < 2 {
		t.Fatalf("8 addresses all on worker %v: the program is not steering", used)
	}

	spread := startTestNode(t, "st2", nil, "--workers", "4", "--sticky", "none")
	moved := 0
	for _, src := range sources {
		seen := map[string]bool{}
		for i := 0; i < tries; i++ {
			seen[workerOf(t, spread.http, src)] = true
		}
		if len(seen) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("with sticky = none every address still stayed on one worker")
	}
}

// TestNoLeaks: 10,000 connect/join/disconnect cycles leave the goroutine
// count at its baseline and the heap where it was.
func TestNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	n := startTestNode(t, "leak1", nil)
	cycle := func(i int) {
		// Named users: anonymous clients of one IP share one rate bucket.
		c := dial(t, n.ws, dialOpts{query: fmt.Sprintf("?user=leak%d", i), buffer: 8, transient: true})
		c.send(map[string]any{"type": "join", "channel": fmt.Sprintf("room%d", i%50)})
		c.next("joined")
		_ = c.conn.WriteClose(1000, nil)
		c.closeCode(5 * time.Second)
	}
	settle := func() (int, uint64) {
		var goroutines int
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if conns, _ := n.hub.Counts(); conns != 0 {
				return fmt.Errorf("%d connections left", conns)
			}
			return nil
		})
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		goroutines = runtime.NumGoroutine()
		return goroutines, ms.HeapAlloc
	}
	for i := 0; i < 200; i++ { // warm pools and maps up
		cycle(i)
	}
	baseG, baseHeap := settle()
	const cycles = 10000
	const parallel = 8
	errs := make(chan error, parallel)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for w := 0; w < parallel; w++ {
		go func(w int) {
			defer func() { errs <- nil }()
			for i := w; i < cycles && ctx.Err() == nil; i += parallel {
				cycle(i)
			}
		}(w)
	}
	for w := 0; w < parallel; w++ {
		<-errs
	}
	if ctx.Err() != nil {
		t.Fatal("cycles did not finish in time")
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		g, _ := settle()
		if g > baseG {
			return fmt.Errorf("%d goroutines, baseline %d", g, baseG)
		}
		return nil
	})
	_, heap := settle()
	if heap > baseHeap+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes over %d cycles", baseHeap, heap, cycles)
	}
	t.Logf("goroutines back to %d; heap %d -> %d bytes", baseG, baseHeap, heap)
}

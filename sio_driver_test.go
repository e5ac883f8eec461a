package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSIODriverInstall: npm ci installs exactly the socket.io-client that
// package.json pins.
func TestSIODriverInstall(t *testing.T) {
	mustNpmCI(t)
	var pinned struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, filepath.Join(sioDir, "package.json"), &pinned)
	var installed struct {
		Version string `json:"version"`
	}
	readJSON(t, filepath.Join(sioDir, "node_modules", "socket.io-client", "package.json"), &installed)
	if want := pinned.Dependencies["socket.io-client"]; installed.Version != want {
		t.Fatalf("installed socket.io-client %q, package.json pins %q", installed.Version, want)
	}
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// closedURL is the URL of a loopback port nothing listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

// TestSIODriverConnectError: on every transport, a client that cannot
// connect prints connect_error and the driver fails promptly, past a sync
// step the test releases.
func TestSIODriverConnectError(t *testing.T) {
	for _, tc := range []struct {
		name       string
		transports []string
	}{
		{"default", nil},
		{"polling", []string{"polling"}},
		{"websocket", []string{"websocket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := sioScenario{URL: closedURL(t), Steps: []sioStep{{Do: "sync", Label: "ready"}, {Do: "connect"}}}
			if tc.transports != nil {
				sc.Options = map[string]any{"transports": tc.transports}
			}
			c := startSIOClient(t, tc.name, sc)
			if l := c.next("sync", nil); l.Label != "ready" {
				t.Fatalf("sync line %v", l)
			}
			c.release()
			c.next("connect_error", nil)
			c.next("fail", func(l sioLine) bool { return l.Step == 1 })
			if code := c.wait(10 * time.Second); code != 1 {
				t.Fatalf("exit status %d, want 1", code)
			}
			for _, l := range c.all() {
				if l.Ev == "connect" || l.Ev == "done" {
					t.Fatalf("printed %v", l)
				}
			}
		})
	}
}

// TestSIODriverSteps: the steps that need no server do what client.mjs
// says, and a scenario it cannot run is refused before anything starts.
func TestSIODriverSteps(t *testing.T) {
	for _, tc := range []struct {
		name     string
		steps    []sioStep
		code     int
		failStep int   // of the fail line, when code is not 0
		minGap   int64 // ms at least from the sync line to done
	}{
		{"expect takes a line printed before it", []sioStep{
			{Do: "sync", Label: "a"},
			{Do: "expect", Match: map[string]any{"ev": "sync", "label": "a"}},
		}, 0, 0, 0},
		{"expect times out", []sioStep{
			{Do: "sync", Label: "a"},
			{Do: "expect", Match: map[string]any{"ev": "sync", "label": "b"}, Timeout: 300},
		}, 1, 1, 0},
		{"wait", []sioStep{{Do: "sync"}, {Do: "wait", MS: 300}}, 0, 0, 300},
		{"unknown step", []sioStep{{Do: "fly"}}, 2, -1, 0},
		{"emit without event", []sioStep{{Do: "emit"}}, 2, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startSIOClient(t, "driver", sioScenario{URL: closedURL(t), Steps: tc.steps})
			var synced sioLine
			if tc.code != 2 {
				synced = c.next("sync", nil)
				c.release()
			}
			if tc.code == 0 {
				if done := c.next("done", nil); done.T-synced.T < tc.minGap {
					t.Fatalf("done %d ms after the sync line, want %d at least", done.T-synced.T, tc.minGap)
				}
			} else {
				c.next("fail", func(l sioLine) bool { return l.Step == tc.failStep })
			}
			if code := c.wait(10 * time.Second); code != tc.code {
				t.Fatalf("exit status %d, want %d", code, tc.code)
			}
		})
	}
}

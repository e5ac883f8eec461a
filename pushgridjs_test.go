package main

// The browser client, gateway/static/pushgrid.js: its Node.js test suite
// (testdata/js) against real nodes spawned from the built binary, and the
// gateway serving it.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// jsDir holds the client's tests and the ws package they pin (Node.js
// before 22 has no global WebSocket).
const jsDir = "testdata/js"

// jsSuiteTimeout bounds the Node suite, which takes about 20 s.
const jsSuiteTimeout = 3 * time.Minute

// jsNpmCI installs testdata/js's pinned packages, once per test binary.
var jsNpmCI = sync.OnceValue(func() error { return npmInstall(jsDir) })

// TestPushgridJS runs testdata/js/*.test.mjs with Node's test runner. The
// files are named, not the directory: Node 21 and later take a directory
// argument for a file to run, Node 20 for a place to search.
func TestPushgridJS(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed; the browser client's tests need Node.js 18 or later")
		}
		t.Skip("the browser client's tests need Node.js 18 or later (node is not on PATH)")
	}
	bin := buildBinary(t)
	if err := jsNpmCI(); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(jsDir, "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s (%v)", jsDir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jsSuiteTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"--test"}, files...)...)
	cmd.Env = append(os.Environ(), "PUSHGRID_BIN="+bin)
	// The runner and the nodes it spawned go at once on a timeout: the
	// whole process group, not just the runner.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		// Nodes a crashed runner left behind, if any.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish within %v:\n%s", jsSuiteTimeout, out.String())
	}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("node --test: %v", err)
		}
		t.Fatalf("node --test %s failed (%v) after %v:\n%s", strings.Join(files, " "), err, time.Since(start).Round(time.Millisecond), out.String())
	}
	t.Logf("node --test passed in %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
}

// TestClientFilesServed: every node's gateway port serves the browser
// client, its declarations and the favicon with their types, and the demo
// page loads the client and nothing from elsewhere.
func TestClientFilesServed(t *testing.T) {
	n := startTestNode(t, "n1", nil, "--cluster-listen", "")
	for _, tc := range []struct {
		path, typ, has string
	}{
		{"/pushgrid.js", "text/javascript; charset=utf-8", "export function connect("},
		{"/pushgrid.d.ts", "text/plain; charset=utf-8", "export function connect(options?: ConnectOptions): Client;"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
		{"/favicon.ico", "image/svg+xml", "<svg"},
		{"/", "text/html; charset=utf-8", `import {connect} from "/pushgrid.js"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(n.http + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", tc.path, resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.typ {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.typ)
			}
			if !strings.Contains(string(body), tc.has) {
				t.Errorf("GET %s: no %q in the body", tc.path, tc.has)
			}
			if tc.path == "/" {
				for _, external := range []string{`src="http`, `href="http`, `src="//`, `href="//`, "@import"} {
					if strings.Contains(string(body), external) {
						t.Errorf("the demo page loads something from elsewhere: %q", external)
					}
				}
			}
		})
	}
}

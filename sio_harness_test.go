package main

// Socket.IO harness: the real socket.io-client, pinned in
// testdata/socketio/package-lock.json and installed by the tests themselves,
// driven by testdata/socketio/client.mjs; and the round-robin proxy that
// sends every HTTP request to the next node, so no session stays on one.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sioDir holds the driver and the npm packages it pins.
const sioDir = "testdata/socketio"

// npmCITimeout bounds `npm ci`, which takes seconds from the lock: a hung
// registry fails the tests that need it instead of the whole run.
const npmCITimeout = 3 * time.Minute

// npmInstall runs `npm ci` in dir: its pinned packages into node_modules,
// since CI starts from a clean clone. Scripts are off: nothing from the
// registry runs but the packages the tests load.
func npmInstall(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), npmCITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	// npm's children may hold the output pipe after a kill at the timeout.
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// npmCI installs testdata/socketio's packages, once per test binary.
var npmCI = sync.OnceValue(func() error { return npmInstall(sioDir) })

// mustNpmCI fails t, with npm's output, when the install failed.
func mustNpmCI(t testing.TB) {
	t.Helper()
	if err := npmCI(); err != nil {
		t.Fatal(err)
	}
}

// sioScenario is the driver's input, documented at the top of client.mjs.
type sioScenario struct {
	URL     string         `json:"url"`
	Options map[string]any `json:"options,omitempty"` // io(url, options)
	Timeout int            `json:"timeout,omitempty"` // ms per step; the driver's default when 0
	Steps   []sioStep      `json:"steps"`
}

// sioStep is one step; Do names it and says which other fields apply.
type sioStep struct {
	Do      string         `json:"do"`
	Event   string         `json:"event,omitempty"` // emit
	Args    []any          `json:"args,omitempty"`  // emit
	Ack     string         `json:"ack,omitempty"`   // emit: the ack line's label; none asked when empty
	Match   map[string]any `json:"match,omitempty"` // expect
	MS      int            `json:"ms,omitempty"`    // wait
	Label   string         `json:"label,omitempty"` // sync
	Timeout int            `json:"timeout,omitempty"`
}

// sioLine is one line the driver printed; which fields are set depends on Ev.
type sioLine struct {
	Ev          string `json:"ev"`
	T           int64  `json:"t"`         // ms since the driver started
	ID          string `json:"id"`        // connect: the Socket.IO id
	SID         string `json:"sid"`       // connect: the Engine.IO session id
	Transport   string `json:"transport"` // connect, upgrade
	Name        string `json:"name"`      // event
	Args        []any  `json:"args"`      // event, ack
	Ack         string `json:"ack"`       // ack, ack_timeout
	Reason      string `json:"reason"`    // disconnect, fail
	Message     string `json:"message"`   // connect_error
	Data        any    `json:"data"`      // connect_error: the CONNECT_ERROR payload's data
	Description any    `json:"description"`
	Label       string `json:"label"`   // sync
	Attempt     int    `json:"attempt"` // reconnect_attempt, reconnect
	Step        int    `json:"step"`    // fail

	raw string
}

func (l sioLine) String() string { return l.raw }

// sioClient is one running driver.
type sioClient struct {
	t     testing.TB
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu    sync.Mutex
	lines []sioLine     // every line printed so far; guarded by mu
	grew  chan struct{} // closed and replaced when lines grows; guarded by mu
	read  int           // lines next has looked at; the test's goroutine only

	exited chan struct{} // closed when the driver has exited and every line is in
	code   int           // the exit status (-1 when killed); set before exited closes
}

// namedLog sends a driver's stderr to t.Log under its name, since a test may
// run several.
type namedLog struct {
	t    testing.TB
	name string
}

func (w namedLog) Write(p []byte) (int, error) {
	w.t.Log(w.name + " stderr: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startSIOClient installs the client if this binary has not yet, starts the
// driver on sc (named name in the test log, where its stderr goes too), and
// kills it when the test ends.
func startSIOClient(t testing.TB, name string, sc sioScenario) *sioClient {
	t.Helper()
	mustNpmCI(t)
	scenario, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	c := &sioClient{t: t, name: name, grew: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command("node", filepath.Join(sioDir, "client.mjs"))
	c.cmd.Stderr = namedLog{t, name}
	// The scenario goes on stdin rather than argv, which then stays open
	// for the lines that release sync steps.
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start the Socket.IO driver (Node.js must be on PATH): %v", err)
	}
	go c.readLines(stdout)
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
	if _, err := c.stdin.Write(append(scenario, '\n')); err != nil {
		t.Fatalf("%s: write the scenario: %v", name, err)
	}
	return c
}

// readLines collects the driver's lines until it exits, then reaps it.
func (c *sioClient) readLines(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 8<<20) // an event may carry a whole max_payload
	for sc.Scan() {
		l := sioLine{raw: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			c.t.Errorf("%s printed a line that is not JSON: %q", c.name, sc.Text())
			continue
		}
		c.t.Log(c.name + ": " + l.raw)
		c.mu.Lock()
		c.lines = append(c.lines, l)
		close(c.grew)
		c.grew = make(chan struct{})
		c.mu.Unlock()
	}
	_ = c.cmd.Wait()
	c.code = c.cmd.ProcessState.ExitCode()
	close(c.exited)
}

// next returns the next line of kind ev that ok (when not nil) accepts,
// passing over the others; it fails the test after 10 s or when the driver
// exits first.
func (c *sioClient) next(ev string, ok func(sioLine) bool) sioLine {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		lines, grew := c.lines, c.grew
		c.mu.Unlock()
		for ; c.read < len(lines); c.read++ {
			if l := lines[c.read]; l.Ev == ev && (ok == nil || ok(l)) {
				c.read++
				return l
			}
		}
		select {
		case <-grew:
		case <-c.exited:
			// Lines printed just before the exit are all in by now.
			c.mu.Lock()
			more := len(c.lines) > c.read
			c.mu.Unlock()
			if !more {
				c.t.Fatalf("%s exited (status %d) before a matching %s line", c.name, c.code, ev)
			}
		case <-timeout:
			c.t.Fatalf("%s printed no matching %s line within 10s", c.name, ev)
		}
	}
}

// all returns every line the driver printed so far, for checks on the
// whole run (no duplicate, no connect_error).
func (c *sioClient) all() []sioLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sioLine(nil), c.lines...)
}

// release lets the driver past the sync step it waits in.
func (c *sioClient) release() {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, "\n"); err != nil {
		c.t.Fatalf("%s: release: %v", c.name, err)
	}
}

// wait waits for the driver to exit and returns its exit status.
func (c *sioClient) wait(within time.Duration) int {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.code
	case <-time.After(within):
		c.t.Fatalf("%s did not exit within %v", c.name, within)
	}
	return 0
}

// rrProxy is the load balancer of the Socket.IO tests: it sends every HTTP
// request to the next backend in turn, each on an upstream TCP connection of
// its own, so the polls, posts and upgrade of one Engine.IO session land on
// different nodes, even when the client keeps one connection alive. An
// upgraded connection stays on its backend for its life, as it must. A
// backend that refuses the connection is passed over, as a load balancer
// passes over a dead node.
type rrProxy struct {
	t        testing.TB
	ln       net.Listener
	backends []string       // host:port
	turn     atomic.Uint64  // requests routed so far
	served   []atomic.Int64 // requests sent to each backend
	wg       sync.WaitGroup // every goroutine of the proxy

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, both sides; guarded by mu
	closed bool                  // guarded by mu
}

// startRRProxy starts a proxy on 127.0.0.1 in front of backends (host:port)
// and closes it, with every connection through it, when the test ends.
func startRRProxy(t testing.TB, backends ...string) *rrProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rrProxy{t: t, ln: ln, backends: backends, served: make([]atomic.Int64, len(backends)),
		conns: make(map[net.Conn]struct{})}
	p.spawn(p.accept)
	t.Cleanup(p.close)
	return p
}

// addr is where clients connect: host:port.
func (p *rrProxy) addr() string { return p.ln.Addr().String() }

// counts says how many requests each backend got, in the order given.
func (p *rrProxy) counts() []int64 {
	n := make([]int64, len(p.served))
	for i := range p.served {
		n[i] = p.served[i].Load()
	}
	return n
}

func (p *rrProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// spawn is how the proxy starts goroutines, so close can wait for them all.
func (p *rrProxy) spawn(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// track registers c for close; once close began it closes c and reports false.
func (p *rrProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *rrProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *rrProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.spawn(func() { p.serve(c) })
	}
}

// serve relays the requests of one client connection, each to the next
// backend, until either side closes or a request upgrades.
func (p *rrProxy) serve(client net.Conn) {
	defer p.untrack(client)
	br := bufio.NewReader(client)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return // the client closed, or sent what is not HTTP
		}
		if !p.relay(client, br, req) {
			return
		}
	}
}

// relay sends req, read from br, to the next backend and the response back
// to client; it reports whether the client connection may carry another
// request.
func (p *rrProxy) relay(client net.Conn, br *bufio.Reader, req *http.Request) bool {
	up, backend := p.dial()
	if up == nil {
		_, _ = io.WriteString(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return false
	}
	defer p.untrack(up)
	p.t.Logf("proxy: %s %s -> %s", req.Method, req.URL.RequestURI(), backend)
	if err := req.Write(up); err != nil {
		return false
	}
	stop := p.watch(client, br, up)
	ubr := bufio.NewReader(up)
	resp, err := http.ReadResponse(ubr, req)
	stop()
	if err != nil {
		return false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if resp.Write(client) == nil {
			p.pipe(client, br, up, ubr)
		}
		return false
	}
	// The upstream connection's own Connection: close is ours to drop; the
	// client's connection ends only when it asked or the body ends at EOF.
	untilEOF := resp.ContentLength < 0 && len(resp.TransferEncoding) == 0
	resp.Close = req.Close || untilEOF
	err = resp.Write(client)
	_ = resp.Body.Close()
	return err == nil && !resp.Close
}

// dial connects to the backend whose turn it is, passing over any that
// refuses.
func (p *rrProxy) dial() (net.Conn, string) {
	turn := p.turn.Add(1) - 1
	for i := range p.backends {
		k := int((turn + uint64(i)) % uint64(len(p.backends)))
		c, err := net.DialTimeout("tcp", p.backends[k], 2*time.Second)
		if err != nil {
			p.t.Logf("proxy: pass over %s: %v", p.backends[k], err)
			continue
		}
		if !p.track(c) {
			return nil, ""
		}
		p.served[k].Add(1)
		return c, p.backends[k]
	}
	return nil, ""
}

// watch closes up if the client hangs up while its request is pending, so
// the backend sees the cancel as it would on a direct connection (Engine.IO
// ends a session whose poll was cancelled). stop ends the watch and leaves
// br to the caller, with any byte the client sent meanwhile still in it.
func (p *rrProxy) watch(client net.Conn, br *bufio.Reader, up net.Conn) (stop func()) {
	done := make(chan struct{})
	p.spawn(func() {
		defer close(done)
		if _, err := br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			_ = up.Close()
		}
	})
	return func() {
		// A read deadline in the past is what wakes the Peek.
		_ = client.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = client.SetReadDeadline(time.Time{})
	}
}

// pipe copies both ways between an upgraded client and its backend, each
// side with what its reader had buffered, until either side ends; closing
// both then ends the other copy.
func (p *rrProxy) pipe(client net.Conn, cbr *bufio.Reader, up net.Conn, ubr *bufio.Reader) {
	done := make(chan struct{})
	p.spawn(func() {
		defer close(done)
		_, _ = io.Copy(up, cbr)
		_ = client.Close()
		_ = up.Close()
	})
	_, _ = io.Copy(client, ubr)
	_ = client.Close()
	_ = up.Close()
	<-done
}

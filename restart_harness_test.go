package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
)

// Harness of the in-place restart tests: nodes run as processes that
// restart themselves, clients that come back and resume, a steady load of
// new connections, and a durable publisher.

// restartable is `pushgrid serve` run as a child process whose processes
// restart in place: every one of them writes to one stderr pipe, and the
// pid file names the serving one.
type restartable struct {
	t       testing.TB
	name    string
	first   *exec.Cmd  // the process the test started
	exited  chan error // its exit status, once
	pidFile string
	ws      string // the gateway's WebSocket URL, the same for every process
	http    string
	nats    string
	cluster string

	mu         sync.Mutex
	started    []string // the "pushgrid started" lines, one per process
	lines      []string // every log line
	readerDone chan struct{}
}

var startedFields = regexp.MustCompile(`pushgrid started.*gateway=(\S+) nats=(\S+) cluster=(\S+)`)

// startRestartable starts a node process with a pid file (fixed flags as
// startProcess, plus extra) and waits for it to serve.
func startRestartable(t testing.TB, name string, seeds []string, extra ...string) *restartable {
	t.Helper()
	dir := t.TempDir()
	r := &restartable{t: t, name: name, exited: make(chan error, 1), pidFile: filepath.Join(dir, name+".pid"),
		readerDone: make(chan struct{})}
	args := []string{"serve", "--node", name, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--cluster-listen", "127.0.0.1:0", "--admin-listen", "", "--workers", "2", "--history-dir", filepath.Join(dir, "data"),
		"--pid-file", r.pidFile}
	for _, s := range seeds {
		args = append(args, "--seed", s)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.first = exec.Command(buildBinary(t), append(args, extra...)...)
	// An *os.File: the processes write to it directly, so the first
	// one's Wait returns when it exits, not when its successor does.
	r.first.Stderr = wr
	if err := r.first.Start(); err != nil {
		t.Fatal(err)
	}
	_ = wr.Close()
	go func() { r.exited <- r.first.Wait() }()
	go func() {
		defer close(r.readerDone)
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.lines = append(r.lines, line)
			if startedFields.MatchString(line) {
				r.started = append(r.started, line)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if pid, err := readPID(r.pidFile); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = r.first.Process.Kill()
		select {
		case <-r.readerDone:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			r.mu.Lock()
			for _, l := range r.lines {
				t.Log(name + ": " + l)
			}
			r.mu.Unlock()
		}
	})
	m := startedFields.FindStringSubmatch(r.awaitStarted(1, 20*time.Second))
	r.ws, r.http, r.nats, r.cluster = "ws://"+m[1]+"/ws", "http://"+m[1], m[2], m[3]
	// The pid file is written once the node is ready.
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		pid, err := readPID(r.pidFile)
		if err == nil && pid != r.first.Process.Pid {
			return fmt.Errorf("the pid file names %d, not %d", pid, r.first.Process.Pid)
		}
		return err
	})
	return r
}

// awaitStarted waits until the count-th process of the node has started,
// and returns its started line.
func (r *restartable) awaitStarted(count int, within time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		n := len(r.started)
		var line string
		if n >= count {
			line = r.started[count-1]
		}
		r.mu.Unlock()
		if line != "" {
			return line
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: process %d did not start within %v", r.name, count, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logged reports whether a log line of the node contains s.
func (r *restartable) logged(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// awaitExit waits for the first process's exit and returns its status.
func (r *restartable) awaitExit(within time.Duration) error {
	r.t.Helper()
	select {
	case err := <-r.exited:
		r.exited <- err
		return err
	case <-time.After(within):
		r.t.Fatalf("%s: the first process did not exit within %v", r.name, within)
	}
	return nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	rest := string(status[strings.LastIndexByte(string(status), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// wsEvents collects a raw client's frames, blocking the read loop rather
// than dropping any.
type wsEvents struct {
	gws.BuiltinEventHandler
	frames chan frame
	closed chan error
}

func (e *wsEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var f frame
	if json.Unmarshal(m.Data.Bytes(), &f) != nil {
		f = frame{rawKey: m.Data.String()}
	}
	e.frames <- f
}

func (e *wsEvents) OnClose(_ *gws.Conn, err error) { e.closed <- err }

// connectLoad opens a WebSocket to one of urls (in turn) every interval
// until stop, each on its own goroutine, and counts those that got their
// welcome frame and those that did not; each is closed at once.
type connectLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
	done       chan struct{}
}

func startConnectLoad(urls []string, every time.Duration, limit int, stop <-chan struct{}) *connectLoad {
	l := &connectLoad{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; i < limit; i++ {
			select {
			case <-stop:
				l.wg.Wait()
				return
			case <-tick.C:
			}
			url := urls[i%len(urls)]
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				if err := connectOnce(url); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err.Error())
					l.mu.Unlock()
					return
				}
				l.ok.Add(1)
			}()
		}
		l.wg.Wait()
	}()
	return l
}

func connectOnce(url string) error {
	ev := &wsEvents{frames: make(chan frame, 16), closed: make(chan error, 1)}
	conn, _, err := gws.NewClient(ev, &gws.ClientOption{Addr: url, HandshakeTimeout: 15 * time.Second})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	go conn.ReadLoop()
	defer func() { _ = conn.WriteClose(1000, nil) }()
	select {
	case f := <-ev.frames:
		if f.str("type") != "welcome" {
			return fmt.Errorf("first frame %v", f)
		}
		return nil
	case err := <-ev.closed:
		return fmt.Errorf("closed before the welcome: %v", err)
	case <-time.After(15 * time.Second):
		return errors.New("no welcome within 15 s")
	}
}

// resumer is a client of a history channel that comes back at once when
// the server closes it, and resumes with since: what a pushgrid.js client
// does.
type resumer struct {
	url, user, channel string

	mu      sync.Mutex
	ns      []int // the n of every news frame, in order of arrival
	lastSeq uint64
	closes  []time.Time // when the server closed it
	codes   []uint16
	backs   []time.Time // when it had joined again after a close
	errs    []string
	done    chan struct{}
}

func startResumer(url, user, channel string, stop <-chan struct{}, joined chan<- struct{}) *resumer {
	r := &resumer{url: url, user: user, channel: channel, done: make(chan struct{})}
	go r.run(stop, joined)
	return r
}

func (r *resumer) fail(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *resumer) run(stop <-chan struct{}, joined chan<- struct{}) {
	defer close(r.done)
	for attempt := 0; attempt < 100; attempt++ {
		select {
		case <-stop:
			return
		default:
		}
		ev := &wsEvents{frames: make(chan frame, 1024), closed: make(chan error, 1)}
		conn, _, err := gws.NewClient(ev, &gws.ClientOption{Addr: r.url + "?user=" + r.user, HandshakeTimeout: 15 * time.Second})
		if err != nil {
			r.fail("dial: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go conn.ReadLoop()
		if !r.session(conn, ev, stop, joined) {
			_ = conn.WriteClose(1000, nil)
			return
		}
		joined = nil
	}
	r.fail("more than 100 connections")
}

// session joins (with since after the first time) and reads news until
// the server closes the connection (true: connect again) or stop (false).
func (r *resumer) session(conn *gws.Conn, ev *wsEvents, stop <-chan struct{}, joined chan<- struct{}) bool {
	join := func() {
		j := map[string]any{"type": "join", "channel": r.channel, "id": "j"}
		r.mu.Lock()
		if r.lastSeq > 0 {
			j["since"] = r.lastSeq
		}
		r.mu.Unlock()
		b, _ := json.Marshal(j)
		_ = conn.WriteString(string(b))
	}
	join()
	for {
		select {
		case <-stop:
			return false
		case err := <-ev.closed:
			// Frames read before the close may still be queued.
			for drained := false; !drained; {
				select {
				case f := <-ev.frames:
					joined = r.handle(f, joined, join)
				default:
					drained = true
				}
			}
			var ce *gws.CloseError
			code := uint16(0)
			if errors.As(err, &ce) {
				code = ce.Code
			}
			r.mu.Lock()
			r.closes = append(r.closes, time.Now())
			r.codes = append(r.codes, code)
			r.mu.Unlock()
			return true
		case f := <-ev.frames:
			joined = r.handle(f, joined, join)
		}
	}
}

// handle takes one frame of a session; it returns joined, or nil once it
// has been told.
func (r *resumer) handle(f frame, joined chan<- struct{}, join func()) chan<- struct{} {
	switch {
	case f["id"] == "j" && f.str("type") == "joined":
		r.mu.Lock()
		since := r.lastSeq
		if len(r.closes) > len(r.backs) {
			r.backs = append(r.backs, time.Now())
		}
		r.mu.Unlock()
		if since > 0 && f["recovered"] != true {
			r.fail("join since %d: not recovered: %v", since, f)
		}
		if joined != nil {
			joined <- struct{}{}
			joined = nil
		}
	case f["id"] == "j" && f.str("type") == "error" && f.str("code") == "unavailable":
		time.Sleep(200 * time.Millisecond)
		join()
	case f["id"] == "j":
		r.fail("join: %v", f)
	case f.str("type") == "news":
		n, _ := f["n"].(float64)
		r.mu.Lock()
		r.ns = append(r.ns, int(n))
		r.lastSeq = max(r.lastSeq, seqOf(f))
		r.mu.Unlock()
	}
	return joined
}

// count is how many news frames r has had.
func (r *resumer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ns)
}

// check reports what is wrong with what r received: every message of
// 1..total exactly once, in order, and no error on the way.
func (r *resumer) check(total int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		return fmt.Errorf("%s: %s", r.user, strings.Join(r.errs, "; "))
	}
	for i, n := range r.ns {
		if n != i+1 {
			return fmt.Errorf("%s: message %d is n=%d (of %d received; closes %v)", r.user, i+1, n, len(r.ns), r.codes)
		}
	}
	if len(r.ns) != total {
		return fmt.Errorf("%s: %d messages, want %d", r.user, len(r.ns), total)
	}
	return nil
}

// durablePublisher publishes total news messages (n = 1..total) to channel
// through push.api.publish with ids, one every interval, retrying each
// with its id until it is stored: what a backend that must not lose a
// message does.
type durablePublisher struct {
	done    chan struct{}
	retries atomic.Int64
	longest atomic.Int64 // the longest time one message took to be stored, ns
}

func startDurablePublisher(nc *nats.Conn, channel, idPrefix string, total int, every time.Duration) *durablePublisher {
	p := &durablePublisher{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		deadline := time.Now().Add(2 * time.Minute)
		next := time.Now()
		for i := 1; i <= total && time.Now().Before(deadline); i++ {
			req, _ := json.Marshal(map[string]any{"channel": channel, "data": map[string]any{"type": "news", "n": i},
				"id": fmt.Sprintf("%s-%d", idPrefix, i)})
			began := time.Now()
			for time.Now().Before(deadline) {
				m, err := nc.Request("push.api.publish", req, 5*time.Second)
				var out map[string]any
				if err == nil && json.Unmarshal(m.Data, &out) == nil && out["seq"] != nil {
					break
				}
				p.retries.Add(1)
				time.Sleep(50 * time.Millisecond) // the same id again
			}
			if took := int64(time.Since(began)); took > p.longest.Load() {
				p.longest.Store(took)
			}
			next = next.Add(every)
			time.Sleep(time.Until(next))
		}
	}()
	return p
}

// writeFileAt replaces the file at path with text.
func writeFileAt(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// resumer is a client of a history channel that comes back when its
// connection ends (the server closed it with 1012, say, or drop cut it),
// joining again with since, and keeps trying when it cannot connect (a
// partition): what a pushgrid.js client does. It records what it got and
// when, for the restart and partition tests.
type resumer struct {
	url, user, channel string

	mu       sync.Mutex
	conn     *gws.Conn
	ns       []int       // the n of every news frame, in order of arrival
	arrived  []time.Time // and when each came
	lastSeq  uint64
	dials    int         // failed dials
	closes   []time.Time // when its connection ended
	codes    []uint16    // with which close code (0: none, the socket died)
	backs    []time.Time // when it had joined again after a close
	rejoins  []string    // what each join with since answered, and when
	errs     []string
	joinedUp bool
	done     chan struct{}
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
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		select {
		case <-stop:
			return
		default:
		}
		ev := &wsEvents{frames: make(chan frame, 4096), closed: make(chan error, 1)}
		// A short dial (a partitioned node does not answer) and a long
		// handshake (a restarting node answers once it serves).
		conn, _, err := gws.NewClient(ev, &gws.ClientOption{Addr: r.url + "?user=" + r.user, HandshakeTimeout: 15 * time.Second,
			NewDialer: func() (gws.Dialer, error) { return &net.Dialer{Timeout: 2 * time.Second}, nil }})
		if err != nil {
			r.mu.Lock()
			r.dials++
			r.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		r.mu.Lock()
		r.conn = conn
		r.mu.Unlock()
		go conn.ReadLoop()
		if !r.session(conn, ev, stop, joined) {
			_ = conn.WriteClose(1000, nil)
			return
		}
	}
	r.fail("still running after 3 minutes")
}

// session joins (with since after the first time) and reads news until
// the connection ends (true: connect again) or stop (false).
func (r *resumer) session(conn *gws.Conn, ev *wsEvents, stop <-chan struct{}, joined chan<- struct{}) bool {
	var sent time.Time
	var since uint64
	join := func() {
		j := map[string]any{"type": "join", "channel": r.channel, "id": "j"}
		r.mu.Lock()
		since = r.lastSeq
		r.mu.Unlock()
		if since > 0 {
			j["since"] = since
		}
		b, _ := json.Marshal(j)
		sent = time.Now()
		_ = conn.WriteString(string(b))
	}
	handle := func(f frame) {
		switch {
		case f["id"] == "j" && f.str("type") == "joined":
			r.mu.Lock()
			if len(r.closes) > len(r.backs) {
				r.backs = append(r.backs, time.Now())
			}
			if since > 0 {
				r.rejoins = append(r.rejoins, fmt.Sprintf("since %d at %s: seq %v recovered %v in %v", since,
					sent.Format("15:04:05.000"), f["seq"], f["recovered"], time.Since(sent).Round(time.Millisecond)))
			}
			first := !r.joinedUp
			r.joinedUp = true
			r.mu.Unlock()
			if since > 0 && f["recovered"] != true {
				r.fail("join since %d: not recovered: %v", since, f)
			}
			if first && joined != nil {
				joined <- struct{}{}
			}
		case f["id"] == "j" && f.str("type") == "error" && f.str("code") == "unavailable":
			r.mu.Lock()
			r.rejoins = append(r.rejoins, fmt.Sprintf("since %d at %s: unavailable after %v", since,
				sent.Format("15:04:05.000"), time.Since(sent).Round(time.Millisecond)))
			r.mu.Unlock()
			time.Sleep(200 * time.Millisecond)
			join()
		case f["id"] == "j":
			r.fail("join: %v", f)
		case f.str("type") == "news":
			n, _ := f["n"].(float64)
			r.mu.Lock()
			r.ns = append(r.ns, int(n))
			r.arrived = append(r.arrived, time.Now())
			r.lastSeq = max(r.lastSeq, seqOf(f))
			r.mu.Unlock()
		}
	}
	join()
	for {
		select {
		case <-stop:
			return false
		case err := <-ev.closed:
			for drained := false; !drained; { // frames read before the close
				select {
				case f := <-ev.frames:
					handle(f)
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
			r.conn = nil
			r.mu.Unlock()
			return true
		case f := <-ev.frames:
			handle(f)
		}
	}
}

// drop cuts the client's connection, as a network that fails does: the
// client connects again and resumes.
func (r *resumer) drop() {
	r.mu.Lock()
	conn := r.conn
	r.mu.Unlock()
	if conn != nil {
		_ = conn.NetConn().Close()
	}
}

// count is how many news frames r has had.
func (r *resumer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ns)
}

// seq is the last seq r has had.
func (r *resumer) seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeq
}

// firstAfter is when r got its first message after at (zero if none).
func (r *resumer) firstAfter(at time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.arrived, at, func(a, b time.Time) int { return a.Compare(b) })
	if i == len(r.arrived) {
		return time.Time{}
	}
	return r.arrived[i]
}

// longestGap is the longest time between two messages r got, and when it
// began.
func (r *resumer) longestGap() (time.Duration, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gap time.Duration
	var at time.Time
	for i := 1; i < len(r.arrived); i++ {
		if d := r.arrived[i].Sub(r.arrived[i-1]); d > gap {
			gap, at = d, r.arrived[i-1]
		}
	}
	return gap, at
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

func (r *resumer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%s: %d messages, %d reconnects, %d failed dials, rejoins %q", r.user, len(r.ns), len(r.closes), r.dials, r.rejoins)
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

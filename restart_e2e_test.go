package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restartConfig: the channel the restart and partition tests publish to
// keeps enough history for a client away for a few seconds at 100 msg/s,
// and announces no joins (which would be stored too).
const restartConfig = `
[[channels]]
pattern = "long.>"
history = 10000
announce = false
`

// restartDrain is gateway.drain in the restart tests: the old process's
// clients are closed with 1012 over it.
const restartDrain = 2 * time.Second

// restartLoad runs what the restart tests restart under: resumers (per
// node URL), a connect load of about 66 connects/s over urls, and a
// durable publisher at 100 msg/s.
type restartLoad struct {
	t         *testing.T
	stop      chan struct{}
	resumers  []*resumer
	load      *connectLoad
	publisher *durablePublisher
	total     int
}

func startRestartLoad(t *testing.T, clients map[string]int, urls []string, natsURL string, total int) *restartLoad {
	t.Helper()
	l := &restartLoad{t: t, stop: make(chan struct{}), total: total}
	joined := make(chan struct{}, 1000)
	k := 0
	for url, count := range clients {
		for range count {
			k++
			l.resumers = append(l.resumers, startResumer(url, fmt.Sprintf("r%d", k), "long.restart", l.stop, joined))
		}
	}
	for range l.resumers {
		select {
		case <-joined:
		case <-time.After(20 * time.Second):
			t.Fatal("the resumers did not all join within 20 s")
		}
	}
	t.Cleanup(l.halt)
	// 15 ms apart: about 66 connects/s, at most 60 s of them.
	l.load = startConnectLoad(urls, 15*time.Millisecond, 4000, l.stop)
	nc := natsConnect(t, natsURL)
	l.publisher = startDurablePublisher(nc, "long.restart", t.Name(), total, 10*time.Millisecond)
	return l
}

// halt stops the resumers and the connect load; it may be called twice.
func (l *restartLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.load.done
	for _, r := range l.resumers {
		<-r.done
	}
}

// finish waits for the publisher, then for every resumer to have every
// message, stops the load and checks: no failed connect, every message
// exactly once and in order at every client.
func (l *restartLoad) finish() {
	t := l.t
	t.Helper()
	select {
	case <-l.publisher.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the publisher did not finish")
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range l.resumers {
		for r.count() < l.total && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // for a duplicate to show
	l.halt()
	t.Logf("connect load: %d connects, %d failed; publisher: %d retries, longest %v to store one message",
		l.load.ok.Load(), l.load.failed.Load(), l.publisher.retries.Load(), time.Duration(l.publisher.longest.Load()).Round(time.Millisecond))
	if n := l.load.failed.Load(); n > 0 {
		l.load.mu.Lock()
		t.Errorf("%d of %d connects failed: %s", n, n+l.load.ok.Load(), strings.Join(l.load.errs[:min(5, len(l.load.errs))], "; "))
		l.load.mu.Unlock()
	}
	if l.load.ok.Load() == 0 {
		t.Error("no connect of the load succeeded")
	}
	for _, r := range l.resumers {
		if err := r.check(l.total); err != nil {
			t.Error(err)
		}
		if r.dials > 0 {
			t.Errorf("%v", r) // a failed connect
		}
	}
}

// backWithin checks that every resumer of url the server closed with 1012
// after at (a SIGHUP) had joined again within d of at; it returns how
// many were closed so.
func (l *restartLoad) backWithin(url string, at time.Time, d time.Duration) int {
	t := l.t
	t.Helper()
	restarted := 0
	var latest time.Duration
	for _, r := range l.resumers {
		if r.url != url {
			continue
		}
		r.mu.Lock()
		for i, closed := range r.closes {
			if closed.Before(at) || r.codes[i] != 1012 {
				continue
			}
			restarted++
			if i >= len(r.backs) {
				t.Errorf("%s: closed with 1012 at %v, never back", r.user, closed.Sub(at).Round(time.Millisecond))
				continue
			}
			back := r.backs[i].Sub(at)
			latest = max(latest, back)
			if back > d {
				t.Errorf("%s: back %v after the SIGHUP, want within %v", r.user, back.Round(time.Millisecond), d)
			}
		}
		r.mu.Unlock()
	}
	t.Logf("%s: %d clients closed with 1012, the last back %v after the SIGHUP", url, restarted, latest.Round(time.Millisecond))
	return restarted
}

// TestSIGHUPRestart: a node (a process) restarts in place on SIGHUP while
// clients keep connecting to it (about 66/s) and a backend publishes to a
// history channel at 100 msg/s through push.api.publish with ids: no
// connect fails, the old process exits 0, the pid file names the new
// one, which serves on the same ports (p3 leads the history stream: it
// hands the leadership over first), the old process's clients are
// closed with 1012 and are back within gateway.drain + 2 s, and every
// client ends with every message once, in order.
func TestSIGHUPRestart(t *testing.T) {
	cfg := writeConfig(t, restartConfig)
	nodes := startCluster(t, 2, "--config", cfg)
	p := startRestartable(t, "p3", []string{nodes[0].broker.ClusterURL()}, "--config", cfg, "--drain", restartDrain.String())
	for _, n := range nodes {
		awaitNodes(t, n, 3)
		awaitHistory(t, n, 3)
	}
	oldPID := p.first.Process.Pid
	// The harder case: p3 leads the channel's stream, and hands the
	// leadership over before it stops.
	moveStreamLeader(t, nodes[0], "push.chan.long.restart", "p3")

	load := startRestartLoad(t, map[string]int{p.ws: 30, nodes[0].ws: 5}, []string{p.ws}, nodes[0].nats, 700)
	time.Sleep(2 * time.Second)
	hup := time.Now()
	if err := syscall.Kill(oldPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.awaitStarted(2, 30*time.Second)
	started := time.Since(hup)
	if err := p.awaitExit(restartDrain + 15*time.Second); err != nil {
		t.Errorf("the old process exited with %v, want 0", err)
	}
	exited := time.Since(hup)
	t.Logf("SIGHUP → new process serving %v, → old process gone %v (drain %v)", started.Round(time.Millisecond), exited.Round(time.Millisecond), restartDrain)
	pid, err := readPID(p.pidFile)
	if err != nil || pid == oldPID || !alive(pid) {
		t.Fatalf("pid file: %d (%v); want a live process other than %d", pid, err, oldPID)
	}
	if m := startedFields.FindStringSubmatch(p.awaitStarted(2, time.Second)); "ws://"+m[1]+"/ws" != p.ws || m[2] != p.nats || m[3] != p.cluster {
		t.Errorf("the new process serves %v; want the old one's gateway %s, NATS %s and routes %s", m[1:], p.ws, p.nats, p.cluster)
	}
	load.finish()
	if n := load.backWithin(p.ws, hup, restartDrain+2*time.Second); n != 30 {
		t.Errorf("%d of the old process's 30 clients were closed with 1012", n)
	}
	awaitNodes(t, nodes[0], 3)
}

// TestSIGHUPRestartFails: when the new process cannot start (here its
// configuration has become invalid), the old one keeps serving and logs
// why; its clients stay connected.
func TestSIGHUPRestartFails(t *testing.T) {
	cfg := writeConfig(t, restartConfig)
	p := startRestartable(t, "p1", nil, "--config", cfg)
	c := dial(t, p.ws, dialOpts{})
	c.join("room")
	// The same arguments, and a file that no longer parses.
	writeFileAt(t, cfg, "[[channels]\n")
	if err := syscall.Kill(p.first.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !p.logged("in-place restart failed") {
			return fmt.Errorf("no failure logged")
		}
		return nil
	})
	if pid, err := readPID(p.pidFile); err != nil || pid != p.first.Process.Pid {
		t.Errorf("pid file: %d (%v), want %d", pid, err, p.first.Process.Pid)
	}
	c.roundTrip()
	dial(t, p.ws, dialOpts{}).roundTrip()
	select {
	case err := <-p.exited:
		t.Fatalf("the old process exited: %v", err)
	default:
	}
}

// TestRollingRestart: scripts/rolling-restart.sh restarts the three nodes
// of a cluster in place, one after the other, under the same load as
// TestSIGHUPRestart spread over them: no connect fails, each old process
// exits 0 and its pid file names its successor, every client closed with
// 1012 is back within gateway.drain + 2 s of its node's SIGHUP, and every
// client ends with every message once, in order.
func TestRollingRestart(t *testing.T) {
	cfg := writeConfig(t, restartConfig)
	flags := []string{"--config", cfg, "--drain", restartDrain.String()}
	r1 := startRestartable(t, "r1", nil, flags...)
	r2 := startRestartable(t, "r2", []string{r1.cluster}, flags...)
	r3 := startRestartable(t, "r3", []string{r1.cluster}, flags...)
	nodes := []*restartable{r1, r2, r3}
	awaitStreamsReady(t, 3, nodes...)

	clients := map[string]int{}
	var urls []string
	var script []string
	for _, n := range nodes {
		clients[n.ws] = 10
		urls = append(urls, n.ws)
		script = append(script, n.pidFile+"@"+strings.TrimPrefix(n.http, "http://"))
	}
	// The publisher's connection moves to another node when its own
	// restarts, as a backend's with the cluster's URLs does.
	load := startRestartLoad(t, clients, urls, strings.Join([]string{r1.nats, r2.nats, r3.nats}, ","), 1200)
	time.Sleep(time.Second)
	began := time.Now()
	cmd := exec.Command("scripts/rolling-restart.sh", append([]string{"-s", "1"}, script...)...)
	out, err := cmd.CombinedOutput()
	t.Logf("rolling restart, %v:\n%s", time.Since(began).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("scripts/rolling-restart.sh: %v", err)
	}
	for _, n := range nodes {
		if err := n.awaitExit(5 * time.Second); err != nil {
			t.Errorf("%s: the old process exited with %v, want 0", n.name, err)
		}
		if pid, err := readPID(n.pidFile); err != nil || pid == n.first.Process.Pid || !alive(pid) {
			t.Errorf("%s: pid file names %d (%v), want its live successor", n.name, pid, err)
		}
	}
	load.finish()
	for _, n := range nodes {
		hup := sighupAt(t, string(out), n.pidFile, n.http)
		if got := load.backWithin(n.ws, hup, restartDrain+2*time.Second); got != 10 {
			t.Errorf("%s: %d of its 10 clients were closed with 1012", n.name, got)
		}
	}
}

// sighupAt is when the script's log says it sent SIGHUP to the node of
// gateway, today.
func sighupAt(t *testing.T, out, pidFile, gateway string) time.Time {
	t.Helper()
	prefix := strings.TrimPrefix(gateway, "http://") + ": SIGHUP"
	for _, line := range strings.Split(out, "\n") {
		// rolling-restart: 15:04:05.000 host:port: SIGHUP to PID
		fields := strings.Fields(line)
		if len(fields) < 3 || !strings.HasPrefix(strings.Join(fields[2:], " "), prefix) {
			continue
		}
		clock, err := time.ParseInLocation("15:04:05.000", fields[1], time.Local)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		return time.Date(now.Year(), now.Month(), now.Day(), clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), time.Local)
	}
	t.Fatalf("no SIGHUP for %s (%s) in the script's output", gateway, pidFile)
	return time.Time{}
}

// awaitStreamsReady waits until every node has logged that its history
// streams are at replicas replicas. (A backend's NATS connection may not
// use the JetStream API.)
func awaitStreamsReady(t testing.TB, replicas int, nodes ...*restartable) {
	t.Helper()
	want := fmt.Sprintf(`msg="history streams ready" node=%%s replicas=%d`, replicas)
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, n := range nodes {
			if !n.logged(fmt.Sprintf(want, n.name)) {
				return fmt.Errorf("%s: history streams not at %d replicas yet", n.name, replicas)
			}
		}
		return nil
	})
}

package main

// Tests that need a real process: signals and kill -9.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary buildBinary built once the tests are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildBinary builds pushgrid once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pushgrid-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pushgrid")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type procNode struct {
	cmd  *exec.Cmd
	ws   string
	done chan error
}

var startedLine = regexp.MustCompile(`pushgrid started.*gateway=(\S+)`)

// startProcess runs `pushgrid serve` as a child process on ephemeral ports
// and waits for its "started" log line.
func startProcess(t testing.TB, name string, seeds []string, extra ...string) *procNode {
	t.Helper()
	args := []string{"serve", "--node", name, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--cluster-listen", "127.0.0.1:0", "--admin-listen", "", "--workers", "2", "--history-dir", t.TempDir()}
	for _, s := range seeds {
		args = append(args, "--seed", s)
	}
	cmd := exec.Command(buildBinary(t), append(args, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &procNode{cmd: cmd, done: make(chan error, 1)}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			t.Log(name + ": " + line)
			if m := startedLine.FindStringSubmatch(line); m != nil {
				found <- m
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	select {
	case m := <-found:
		p.ws = "ws://" + m[1] + "/ws"
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return p
}

func (p *procNode) wait(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(within):
		t.Fatalf("process did not exit within %v", within)
	}
	return nil
}

// TestSIGTERMDrain: SIGTERM closes clients with 1001 after the drain period
// and exits 0, while the other nodes keep serving.
func TestSIGTERMDrain(t *testing.T) {
	nodes := startCluster(t, 2)
	p := startProcess(t, "p3", []string{nodes[0].broker.ClusterURL()}, "--drain", "700ms")
	awaitNodes(t, nodes[0], 3)
	onP := dial(t, p.ws, dialOpts{})
	onP.join("ops")
	a := dial(t, nodes[0].ws, dialOpts{query: "?user=a"})
	b := dial(t, nodes[1].ws, dialOpts{query: "?user=b"})
	a.join("ops")
	b.join("ops")

	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := onP.closeCode(10 * time.Second); code != 1001 {
		t.Fatalf("client of the drained node: close %d, want 1001", code)
	}
	if waited := time.Since(sent); waited < 600*time.Millisecond {
		t.Fatalf("closed after %v, before the drain period", waited)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit: %v, want 0", err)
	}
	// The others keep serving and forget the node.
	awaitInterest(t, nodes, "ops", 2)
	a.send(map[string]any{"type": "chat", "channel": "ops", "msg": "still up"})
	b.nextWhere("chat", func(f frame) bool { return f["msg"] == "still up" })
	awaitNodes(t, nodes[1], 2)
}

// TestKill9: a node killed outright takes only its own clients with it.
func TestKill9(t *testing.T) {
	nodes := startCluster(t, 2)
	p := startProcess(t, "k3", []string{nodes[0].broker.ClusterURL()})
	awaitNodes(t, nodes[1], 3)
	onP := dial(t, p.ws, dialOpts{})
	onP.join("ops")
	a := dial(t, nodes[0].ws, dialOpts{})
	b := dial(t, nodes[1].ws, dialOpts{})
	a.join("ops")
	b.join("ops")
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	onP.closeCode(5 * time.Second)
	_ = p.wait(t, 5*time.Second)
	a.send(map[string]any{"type": "chat", "channel": "ops", "msg": "after kill"})
	b.nextWhere("chat", func(f frame) bool { return f["msg"] == "after kill" })
	a.nextWhere("chat", func(f frame) bool { return f["msg"] == "after kill" })
	for _, n := range nodes {
		awaitNodes(t, n, 2)
	}
}

package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Taking over from a previous process of the same node (an in-place
// restart, see ../shared/notes/in-place-restart.md).
//
// The embedded server's client and route ports cannot be shared (NATS has
// no SO_REUSEPORT option), and two servers on one JetStream store diverge
// and corrupt it, with nothing in nats-server to stop the second. So the
// previous process shuts its server down (Shutdown) before the next one
// starts its own: the next one waits for the ports to be free and for the
// store's lock, which a node holds from before its server opens the store
// until after the server has stopped. Backends' NATS clients reconnect by
// themselves, and buffer what they publish meanwhile.

// storeLockName is the lock file in the store directory.
const storeLockName = "pushgrid.lock"

// portPoll is how often a taking-over node tries its ports again.
const portPoll = 2 * time.Millisecond

// storeLock holds the store directory's lock: an exclusive flock on
// <dir>/pushgrid.lock, which holds the holder's process id for the error
// message of the next one. The kernel drops it when the process dies, so a
// node killed with -9 leaves no stale lock.
type storeLock struct{ f *os.File }

// lockStore takes dir's lock, waiting up to wait for it (0: not at all).
func lockStore(dir string, wait time.Duration) (*storeLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("history.dir: %w", err)
	}
	path := filepath.Join(dir, storeLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("history.dir: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("history.dir: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			_ = f.Close()
			who := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("history.dir %s is in use by %s (two servers on one JetStream store corrupt it): "+
				"give each node its own history.dir", dir, who)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &storeLock{f: f}, nil
}

// release drops the lock; the file stays (another process may hold it by
// now: removing it would let a third lock a new file beside).
func (l *storeLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// awaitPorts waits, up to wait, until each of addrs (host:port; port 0 is
// skipped) can be bound: the previous process of this node has let go of
// it. Each probe's listener is closed at once, for the NATS server to bind.
func awaitPorts(addrs []string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for _, addr := range addrs {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" || port == "" {
			continue
		}
		for {
			l, err := net.Listen("tcp", addr)
			if err == nil {
				_ = l.Close()
				break
			}
			if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
				return fmt.Errorf("%s is still in use after %v: %w", addr, wait, err)
			}
			time.Sleep(portPoll)
		}
	}
	return nil
}

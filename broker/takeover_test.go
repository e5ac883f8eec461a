package broker

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStoreLock: a store directory is locked by one holder at a time; the
// second is refused at once with the holder's pid, or, told to wait,
// gets the lock once the first lets go.
func TestStoreLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	first, err := lockStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockStore(dir, 0)
	if err == nil || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want in use by this process", err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		first.release()
	}()
	began := time.Now()
	second, err := lockStore(dir, 5*time.Second)
	if err != nil {
		t.Fatalf("waiting lock: %v", err)
	}
	if waited := time.Since(began); waited < 50*time.Millisecond {
		t.Errorf("the waiting lock was taken after %v, while the first still held it", waited)
	}
	second.release()
	second.release() // twice is fine
}

// TestStartRefusesLockedStore: a node whose history store another
// process holds does not start, and says why.
func TestStartRefusesLockedStore(t *testing.T) {
	dir := t.TempDir()
	held, err := lockStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.release()
	b, err := New(Config{Node: "locked", Listen: "127.0.0.1:0", Heartbeat: 200 * time.Millisecond, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(t.Context(), &recorder{})
	if err == nil {
		_ = b.Shutdown(t.Context())
		t.Fatal("started on a locked store")
	}
	if !strings.Contains(err.Error(), "history.dir") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error %q does not say the store is in use", err)
	}
}

// TestAwaitPorts: waiting for a port returns once its holder closes it,
// and fails, naming it, when it is still held at the deadline.
func TestAwaitPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := awaitPorts([]string{addr}, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("a held port: %v, want an error naming %s", err, addr)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = l.Close()
	}()
	if err := awaitPorts([]string{addr, "127.0.0.1:0"}, 5*time.Second); err != nil {
		t.Fatalf("a port let go of: %v", err)
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/session"
)

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(tb testing.TB) (near, far net.Conn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	near, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	far, err = l.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = near.Close(); _ = far.Close() })
	return near, far
}

// TestResponseWrittenFirst: the pending handshake response goes out ahead
// of the first frame, in one write, and only once.
func TestResponseWrittenFirst(t *testing.T) {
	near, far := tcpPair(t)
	response := append(make([]byte, 0, 64), "HTTP/1.1 101 Switching Protocols\r\n\r\n"...)
	tr := newTransport(nil, near, response, time.Second)
	if n, err := tr.TryWrite([]byte("one")); n != 3 || err != nil {
		t.Fatalf("first TryWrite = %d, %v; want 3, nil (the response is not counted)", n, err)
	}
	if err := tr.Write([][]byte{[]byte("two")}); err != nil {
		t.Fatal(err)
	}
	_ = near.Close()
	got, err := io.ReadAll(far)
	if err != nil {
		t.Fatal(err)
	}
	if want := "HTTP/1.1 101 Switching Protocols\r\n\r\nonetwo"; string(got) != want {
		t.Fatalf("the peer read %q, want %q", got, want)
	}
}

// TestOwnWritesWaitForFrameBoundary: a write gws makes on its own (say, the
// answer to a client's close frame) while a frame is half on the socket
// waits until the writer has written the rest, instead of landing inside it.
func TestOwnWritesWaitForFrameBoundary(t *testing.T) {
	near, far := tcpPair(t)
	tr := newTransport(nil, near, nil, 5*time.Second)
	sc := &socketConn{Conn: near, t: tr}
	big := bytes.Repeat([]byte("f"), 32<<20) // more than the socket buffers take
	n, err := tr.TryWrite(big)
	if err != nil || n == 0 || n == len(big) {
		t.Fatalf("TryWrite = %d, %v; want a partial write", n, err)
	}
	own := make(chan error, 1)
	go func() {
		_, err := sc.Write([]byte("CLOSE"))
		own <- err
	}()
	time.Sleep(50 * time.Millisecond) // gws's write is waiting now
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(far)
		got <- b
	}()
	if err := tr.Write([][]byte{big[n:]}); err != nil {
		t.Fatal(err)
	}
	if err := <-own; err != nil {
		t.Fatal(err)
	}
	_ = near.Close()
	b := <-got
	if len(b) != len(big)+5 || !bytes.Equal(b[len(big):], []byte("CLOSE")) || bytes.Contains(b[:len(big)], []byte("C")) {
		t.Fatalf("the peer read %d bytes; gws's write landed inside the frame: tail %q", len(b), b[max(0, len(b)-10):])
	}
}

// TestTryWriteNeverWaits: while gws writes a frame of its own to a client
// that does not read (which can take up to the write timeout), TryWrite
// returns at once having written nothing, so the caller queues the frame
// instead of stalling a channel's dispatcher behind one socket.
func TestTryWriteNeverWaits(t *testing.T) {
	near, _ := tcpPair(t)
	tr := newTransport(nil, near, nil, 2*time.Second)
	sc := &socketConn{Conn: near, t: tr}
	own := make(chan error, 1)
	go func() {
		_, err := sc.Write(bytes.Repeat([]byte("p"), 32<<20)) // blocks: nobody reads
		own <- err
	}()
	for tr.boundary.TryLock() { // until gws's write holds the boundary
		tr.boundary.Unlock()
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := tr.TryWrite([]byte("frame")); n != 0 || err != nil {
			t.Errorf("TryWrite during gws's write = %d, %v; want 0, nil", n, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("TryWrite waited for gws's write")
	}
	// gws's own write is bounded by the write timeout.
	select {
	case err := <-own:
		if err == nil {
			t.Fatal("a write to a client that never reads succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gws's own write was not bounded by the write timeout")
	}
}

// TestNothingAfterCloseFrame: once gws has written a close frame, the
// session's writes are refused rather than following it on the wire.
func TestNothingAfterCloseFrame(t *testing.T) {
	near, far := tcpPair(t)
	tr := newTransport(nil, near, nil, time.Second)
	sc := &socketConn{Conn: near, t: tr}
	if _, err := sc.Write([]byte{0x88, 0x02, 0x03, 0xe8}); err != nil { // close 1000
		t.Fatal(err)
	}
	if n, err := tr.TryWrite([]byte("late")); n != 0 || err == nil {
		t.Errorf("TryWrite after the close frame = %d, %v; want an error", n, err)
	}
	if err := tr.Write([][]byte{[]byte("late")}); err == nil {
		t.Error("Write after the close frame succeeded")
	}
	_ = near.Close()
	if got, _ := io.ReadAll(far); !bytes.Equal(got, []byte{0x88, 0x02, 0x03, 0xe8}) {
		t.Fatalf("the peer read %q, want the close frame alone", got)
	}
}

// TestNoCloseFrameAfterFailedWrite: a write that failed may have left a
// frame half on the socket, so Close then sends no close frame into it.
func TestNoCloseFrameAfterFailedWrite(t *testing.T) {
	near, far := tcpPair(t)
	r, err := parse(upgradeRequest)
	if err != nil {
		t.Fatal(err)
	}
	sc := &socketConn{Conn: near}
	socket, err := gws.NewUpgrader(&gws.BuiltinEventHandler{}, nil).UpgradeFromConn(sc, bufio.NewReader(near), r)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(socket, near, nil, 200*time.Millisecond)
	sc.t = tr
	big := bytes.Repeat([]byte("f"), 32<<20)
	if err := tr.Write([][]byte{big}); err == nil { // nobody reads: times out midway
		t.Fatal("a 32 MiB write to a client that never reads succeeded")
	}
	// Now the peer reads everything there is.
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(far)
		got <- b
	}()
	_ = tr.Close(session.Disconnect{Code: 1000, Reason: "write failed"})
	b := <-got
	_, frames, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	if len(frames) == 0 || len(frames) == len(big) || bytes.IndexByte(frames, 0x88) >= 0 {
		t.Fatalf("after %d bytes of a torn frame the peer read a close frame", len(frames))
	}
}

// TestCloseAfterPartialTryWrite: when the session discards what followed a
// partial write that ended on a frame boundary (a slow consumer), Close is
// the next call and must not wait for the boundary the partial write holds.
func TestCloseAfterPartialTryWrite(t *testing.T) {
	near, far := tcpPair(t)
	r, err := parse(upgradeRequest)
	if err != nil {
		t.Fatal(err)
	}
	sc := &socketConn{Conn: near}
	socket, err := gws.NewUpgrader(&gws.BuiltinEventHandler{}, nil).UpgradeFromConn(sc, bufio.NewReader(near), r)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(socket, near, nil, 5*time.Second)
	sc.t = tr
	big := bytes.Repeat([]byte("f"), 32<<20) // more than the socket buffers take
	n, err := tr.TryWrite(big)
	if err != nil || n == 0 || n == len(big) {
		t.Fatalf("TryWrite = %d, %v; want a partial write", n, err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(far)
		got <- b
	}()
	closed := make(chan error, 1)
	go func() { closed <- tr.Close(session.Disconnect{Code: 4001, Reason: "slow consumer"}) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close after a partial TryWrite never returned")
	}
	b := <-got
	_, frames, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	if want := []byte{0x88, 15, 0x0f, 0xa1}; !bytes.HasSuffix(frames, append(want, "slow consumer"...)) {
		t.Fatalf("the peer's last bytes are %q, want close 4001", frames[max(0, len(frames)-20):])
	}
}

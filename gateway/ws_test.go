package gateway

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
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

package gateway

import (
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

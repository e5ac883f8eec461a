package main

// A raw WebSocket client for hostile tests: it writes exactly the bytes a
// test builds (bursts, half frames, duplicate keys) and reads the server's
// frames itself, so nothing in a client library smooths them over.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

type rawWS struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// rawDial opens a WebSocket to addr (host:port) with path (such as
// "/ws?user=x") and reads the 101 response.
func rawDial(t testing.TB, addr, path string) *rawWS {
	t.Helper()
	conn := rawConn(t, addr, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &rawWS{t: t, conn: conn, br: br}
}

// rawConn opens a TCP connection to addr, closed when the test ends, and
// writes send on it.
func rawConn(t testing.TB, addr, send string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	return conn
}

// maskedFrame is one client frame (masked, as clients must) of opcode op.
func maskedFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func textFrame(s string) []byte { return maskedFrame(0x1, []byte(s)) }

func (w *rawWS) write(b []byte) {
	w.t.Helper()
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.conn.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// serverFrame is one frame from the server.
type serverFrame struct {
	op      byte
	payload []byte
}

// read returns the next server frame, or an error (io.EOF, a reset, a
// timeout) once within passes.
func (w *rawWS) read(within time.Duration) (serverFrame, error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(within))
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(w.br, x[:]); err != nil {
			return serverFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(w.br, x[:]); err != nil {
			return serverFrame{}, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	if n > 16<<20 {
		return serverFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{op: h[0] & 0x0f, payload: p}, nil
}

// closeCode reads until the server's close frame and returns its code; ok
// is false if the connection ended, or within passed, without one.
func (w *rawWS) closeCode(within time.Duration) (code uint16, reason string, ok bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		f, err := w.read(time.Until(deadline))
		if err != nil {
			return 0, err.Error(), false
		}
		if f.op == 0x8 {
			if len(f.payload) < 2 {
				return 0, "", true
			}
			return binary.BigEndian.Uint16(f.payload), string(f.payload[2:]), true
		}
	}
	return 0, "timeout", false
}

// nextText returns the next text frame whose payload contains substr.
func (w *rawWS) nextText(substr string, within time.Duration) string {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		f, err := w.read(time.Until(deadline))
		if err != nil {
			w.t.Fatalf("waiting for a frame with %s: %v", substr, err)
		}
		if f.op == 0x1 && strings.Contains(string(f.payload), substr) {
			return string(f.payload)
		}
	}
	w.t.Fatalf("no frame with %s within %v", substr, within)
	return ""
}

// waitClosed reads and discards until the server closes the TCP
// connection (EOF or reset) and reports whether it did within d.
func waitClosed(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

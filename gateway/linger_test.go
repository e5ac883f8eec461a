package gateway

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushgrid/pushgrid/session"
)

// TestCloseFrameSurvivesUnreadBurst: a client that sends a burst of frames,
// earns close 1008 for its rate and reads nothing until the node has
// closed its socket still finds the close frame. Closing a socket with the
// client's frames unread in it makes the kernel send a reset at once and
// drop what the socket had yet to send: with a client that does not read,
// the answers to the burst and the close frame after them. The node
// half-closes instead and reads on (here, to the end of the linger) before
// it closes. Twenty clients at once, each its own user (the rate is per
// user), so that the twenty lingers overlap.
func TestCloseFrameSurvivesUnreadBurst(t *testing.T) {
	// 400 frames are answered, about 7 kB, more than the client's window;
	// then 10 more earn the close, and 1590 are left unread.
	g := startGatewayWith(t, Config{}, session.Config{Rate: 1, Burst: 400})
	frames := pingFrames(2000)
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive window: most of the node's answers wait in its
		// own socket.
		return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 2048) })
	}}
	conns := make([]net.Conn, 20)
	for i := range conns {
		conn, err := dialer.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		req := strings.Replace(upgradeRequest, "user=alice", fmt.Sprintf("user=u%d", i), 1)
		if _, err := conn.Write(append([]byte(req), frames...)); err != nil {
			t.Fatal(err)
		}
		conns[i] = conn
	}
	// Read nothing until the node is done with the connections.
	waitFor(t, 10*time.Second, "the node closes the connections", func() bool {
		return g.hub.Stats().Connections == 0 && g.sockets() == 0
	})
	for i, conn := range conns {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		c := &wsClient{conn: conn, br: bufio.NewReader(conn)}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("client %d: no 101: %v", i, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("client %d: %d", i, resp.StatusCode)
		}
		for n := 0; ; n++ {
			op, p, err := c.readFrame()
			if err != nil {
				t.Fatalf("client %d: no close frame after %d frames: %v", i, n, err)
			}
			if op == 8 {
				if code := binary.BigEndian.Uint16(p); code != 1008 {
					t.Fatalf("client %d: close %d, want 1008", i, code)
				}
				break
			}
		}
	}
}

// TestLingerEndsOnClientClose: after the node's close frame, a client that
// answers with its own close frame (and keeps its TCP connection open, as
// browsers do) has its connection closed at once, not after the linger.
func TestLingerEndsOnClientClose(t *testing.T) {
	g := startGatewayWith(t, Config{}, session.Config{Rate: 1, Burst: 1})
	c := dialWS(t, g, nil)
	c.handshake(t)
	c.write(t, pingFrames(20))
	if code, _ := c.readClose(t, 5*time.Second); code != 1008 {
		t.Fatalf("close %d, want 1008", code)
	}
	// A frame after the node's close frame is not handled.
	c.write(t, append(pingFrames(1), clientFrame(8, []byte{0x03, 0xf0})...))
	start := time.Now()
	if rest := expectEnd(t, c.conn, c.br, 5*time.Second); len(rest) != 0 {
		t.Fatalf("after the close frame: %q", rest)
	}
	if d := time.Since(start); d > closeLinger {
		t.Fatalf("closed after %v: waited for the linger instead of the client's close frame", d)
	}
}

// TestLingerBounded: a client that neither reads nor closes is closed once
// the linger ends.
func TestLingerBounded(t *testing.T) {
	g := startGatewayWith(t, Config{}, session.Config{Rate: 1, Burst: 1})
	dialWS(t, g, pingFrames(50))
	waitFor(t, closeLinger+5*time.Second, "the socket closes after the linger", func() bool { return g.sockets() == 0 })
}

// TestSocketsReleased: whatever way a connection ends (refused before or
// by the upgrade, closed by either side, a frame refused by gws), its
// socket is closed and no longer counted.
func TestSocketsReleased(t *testing.T) {
	g := startGatewayWith(t, Config{}, session.Config{})
	bad := strings.Replace(upgradeRequest, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1)
	for name, send := range map[string]string{
		"bad upgrade":              bad,
		"bad upgrade via net/http": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + bad,
		"bad user":                 strings.Replace(upgradeRequest, "user=alice", "user=a*b", 1),
		"not a request":            "hello\r\n\r\n",
		"healthz":                  "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"client close frame":       upgradeRequest + string(clientFrame(8, []byte{0x03, 0xe8})),
		"frame too large":          upgradeRequest + string(frameHeader(0x81, 1<<20)),
		"binary frame":             upgradeRequest + string(clientFrame(2, []byte("x"))),
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", g.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, send); err != nil {
				t.Fatal(err)
			}
			_ = conn.(*net.TCPConn).CloseWrite() // the node's linger need not wait
			expectEnd(t, conn, conn, 5*time.Second)
			waitFor(t, 5*time.Second, "no socket left", func() bool { return g.sockets() == 0 })
		})
	}
	t.Run("client goes away", func(t *testing.T) {
		c := dialWS(t, g, nil)
		c.handshake(t)
		_ = c.conn.Close()
		waitFor(t, 5*time.Second, "no socket left", func() bool { return g.sockets() == 0 })
	})
	t.Run("shutdown", func(t *testing.T) {
		g := startGatewayWith(t, Config{}, session.Config{})
		for i := 0; i < 3; i++ {
			c := dialWS(t, g, nil)
			c.handshake(t)
			go func() {
				_, _ = io.Copy(io.Discard, c.br) // to the node's FIN after its close frame
				_ = c.conn.Close()
			}()
		}
		if err := stopGateway(g); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "no socket left", func() bool { return g.sockets() == 0 })
	})
}

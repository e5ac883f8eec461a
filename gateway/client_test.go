package gateway

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// startGatewayWith starts a one-worker gateway on a loopback port with cfg
// (Listen, Workers and Drain filled in for tests) over a hub with scfg.
func startGatewayWith(tb testing.TB, cfg Config, scfg session.Config) *Gateway {
	tb.Helper()
	g := newGatewayWith(tb, cfg, scfg)
	if err := g.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return g
}

// newGatewayWith is startGatewayWith but for Start; it is shut down when
// the test ends.
func newGatewayWith(tb testing.TB, cfg Config, scfg session.Config) *Gateway {
	tb.Helper()
	if scfg.Node == "" {
		scfg.Node = "g1"
	}
	hub, err := session.New(scfg, nullBus{}, nullBus{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Listen, cfg.Workers = "127.0.0.1:0", 1
	if cfg.Drain == 0 {
		cfg.Drain = 50 * time.Millisecond
	}
	g, err := New(cfg, hub)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = stopGateway(g) })
	return g
}

// stopGateway shuts g and its hub down in the order a node does: stop
// accepting, drain and close the hub's connections, wait for the sockets.
func stopGateway(g *Gateway) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g.StopAccepting(ctx)
	drain, cancelDrain := context.WithTimeout(ctx, g.cfg.Drain)
	defer cancelDrain()
	if err := g.hub.Shutdown(drain); err != nil {
		return err
	}
	return g.Shutdown(ctx)
}

// wsClient is a raw WebSocket client for tests that misbehave on purpose.
type wsClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialWS sends an upgrade request followed, in the same write, by extra
// (frames sent before the answer arrived); it reads nothing.
func dialWS(tb testing.TB, g *Gateway, extra []byte) *wsClient {
	tb.Helper()
	return dialWSAfter(tb, g, "", extra)
}

// dialWSAfter is dialWS with another request ahead of the upgrade on the
// same connection (so that net/http serves the upgrade); its answer is
// read and checked.
func dialWSAfter(tb testing.TB, g *Gateway, before string, extra []byte) *wsClient {
	tb.Helper()
	conn, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &wsClient{conn: conn, br: bufio.NewReader(conn)}
	if before != "" {
		if _, err := io.WriteString(conn, before); err != nil {
			tb.Fatal(err)
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("%q: %d", before, resp.StatusCode)
		}
	}
	if _, err := conn.Write(append([]byte(upgradeRequest), extra...)); err != nil {
		tb.Fatal(err)
	}
	return c
}

// handshake reads the 101 response and the welcome frame.
func (c *wsClient) handshake(tb testing.TB) {
	tb.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade: %d", resp.StatusCode)
	}
	op, p, err := c.readFrame()
	if err != nil || op != 1 || !strings.Contains(string(p), `"type":"welcome"`) {
		tb.Fatalf("no welcome: %d %q %v", op, p, err)
	}
}

func (c *wsClient) write(tb testing.TB, p []byte) {
	tb.Helper()
	if _, err := c.conn.Write(p); err != nil {
		tb.Fatal(err)
	}
}

// readFrame reads one unmasked server frame.
func (c *wsClient) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// readClose reads frames until a close frame and returns its code and
// reason; it fails the test if none comes within timeout.
func (c *wsClient) readClose(tb testing.TB, timeout time.Duration) (uint16, string) {
	tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		op, p, err := c.readFrame()
		if err != nil {
			tb.Fatalf("no close frame: %v", err)
		}
		if op == 8 {
			if len(p) < 2 {
				return 0, ""
			}
			return binary.BigEndian.Uint16(p), string(p[2:])
		}
	}
}

// readText reads frames until a text frame holding want.
func (c *wsClient) readText(tb testing.TB, want string) {
	tb.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		op, p, err := c.readFrame()
		if err != nil {
			tb.Fatalf("waiting for %s: %v", want, err)
		}
		if op == 8 {
			tb.Fatalf("waiting for %s: closed %q", want, p)
		}
		if op == 1 && strings.Contains(string(p), want) {
			return
		}
	}
}

// expectEnd reads until the server closes the connection and fails the
// test if it does not within timeout. It returns what it read.
func expectEnd(tb testing.TB, conn net.Conn, r io.Reader, timeout time.Duration) []byte {
	tb.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Fatalf("still open after %v (read %q)", timeout, b)
	}
	return b
}

// clientFrame is one masked client frame with FIN set.
func clientFrame(op byte, payload []byte) []byte {
	return append(frameHeader(0x80|op, uint64(len(payload))), maskPayload(payload)...)
}

// testMask is the mask key of every test frame.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frameHeader is the header of a masked client frame whose first byte is
// b0 and whose payload is n bytes.
func frameHeader(b0 byte, n uint64) []byte {
	h := []byte{b0, 0x80}
	switch {
	case n < 126:
		h[1] |= byte(n)
	case n <= 0xffff:
		h[1] |= 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] |= 127
		h = binary.BigEndian.AppendUint64(h, n)
	}
	return append(h, testMask[:]...)
}

func maskPayload(p []byte) []byte {
	out := make([]byte, len(p))
	for i, b := range p {
		out[i] = b ^ testMask[i%4]
	}
	return out
}

// pingFrames is n text frames {"type":"ping"}.
func pingFrames(n int) []byte {
	f := clientFrame(1, []byte(`{"type":"ping"}`))
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, f...)
	}
	return b
}

// paddedPing is a ping frame's JSON padded to exactly n bytes.
func paddedPing(n int) []byte {
	const head = `{"type":"ping","pad":"`
	return []byte(fmt.Sprintf("%s%s\"}", head, strings.Repeat("x", n-len(head)-2)))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

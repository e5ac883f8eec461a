package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/pushgrid/pushgrid/session"
)

func startGateway(t *testing.T) *Gateway {
	t.Helper()
	return startGatewayWith(t, Config{}, session.Config{})
}

// rawRequest sends req on a fresh connection and returns the reader of the
// answer.
func rawRequest(t *testing.T, g *Gateway, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

const upgradeRequest = "GET /ws?user=alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

// TestUpgradeResponseCarriesWelcome: on the light path the 101 response and
// the welcome frame are one write, so the first read holds both.
func TestUpgradeResponseCarriesWelcome(t *testing.T) {
	g := startGateway(t)
	conn, _ := rawRequest(t, g, upgradeRequest)
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	head, frame, ok := strings.Cut(got, "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 101 ") {
		t.Fatalf("first read is not a whole 101 response: %q", got)
	}
	if !strings.Contains(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
		t.Fatalf("wrong accept key: %q", head)
	}
	// An unmasked text frame with a short length, then the welcome.
	if len(frame) < 2 || frame[0] != 0x81 || int(frame[1]) != len(frame)-2 {
		t.Fatalf("the welcome frame did not come with the response: %q", frame)
	}
	if !strings.Contains(frame, `"type":"welcome"`) || !strings.Contains(frame, `"user":"alice"`) {
		t.Fatalf("not the welcome: %q", frame)
	}
}

// TestBadUpgradeAnswered: a /ws request gws refuses still gets its 400
// (only a 101 is held back for the welcome).
func TestBadUpgradeAnswered(t *testing.T) {
	g := startGateway(t)
	req := strings.Replace(upgradeRequest, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1)
	_, br := rawRequest(t, g, req)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

// TestCutHeadAnswered: a head cut short gets a plain 400, without the I/O
// error's text, which names the node's addresses.
func TestCutHeadAnswered(t *testing.T) {
	g := startGateway(t)
	conn, br := rawRequest(t, g, "GET /ws HTTP/1.1\r\nHost: x\r\n")
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "malformed request") ||
		strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestIdentifyCopiesUser: the user a request names, by query or by an
// Authorize hook, does not share the request head's memory, which the
// connection would otherwise keep for its life.
func TestIdentifyCopiesUser(t *testing.T) {
	r, err := parse("GET /ws?user=alice HTTP/1.1\r\nHost: x\r\nX-User: bob\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	shares := func(user, of string) bool { return unsafe.StringData(user) == unsafe.StringData(of) }
	g := &Gateway{}
	id, err := g.identify(r)
	user := id.User
	if err != nil || user != "alice" || id.Verified {
		t.Fatalf("identify = %+v, %v", id, err)
	}
	if _, v, _ := strings.Cut(r.URL.RawQuery, "="); shares(user, v) {
		t.Error("the query's user shares the request head")
	}
	g.cfg.Authorize = func(r *http.Request, _ netip.Addr) (session.Identity, error) {
		return session.Identity{User: r.Header.Get("X-User")}, nil
	}
	id, err = g.identify(r)
	user = id.User
	if err != nil || user != "bob" || !id.Verified {
		t.Fatalf("identify with Authorize = %+v, %v", id, err)
	}
	if shares(user, r.Header.Get("X-User")) {
		t.Error("the hook's user shares the request head")
	}
}

// TestUpgradeAfterAnotherRequest: a /ws request that follows another on a
// keep-alive connection is served by net/http and upgraded all the same.
func TestUpgradeAfterAnotherRequest(t *testing.T) {
	g := startGateway(t)
	conn, br := rawRequest(t, g, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if _, err := io.WriteString(conn, upgradeRequest); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade after /healthz: %d", resp.StatusCode)
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil || head[0] != 0x81 {
		t.Fatalf("no text frame after the 101: %q, %v", head, err)
	}
	frame := make([]byte, head[1])
	if _, err := io.ReadFull(br, frame); err != nil || !strings.Contains(string(frame), `"type":"welcome"`) {
		t.Fatalf("not the welcome: %q, %v", frame, err)
	}
}

// TestReplayConnWritesDirect: a connection handed to net/http (a /ws
// request after another) keeps its socket's raw writes, so its frames are
// not all forced through the queue and writer goroutine.
func TestReplayConnWritesDirect(t *testing.T) {
	near, far := tcpPair(t)
	rc := &replayConn{Conn: near, r: bufio.NewReader(near)}
	tr := newTransport(nil, rc, nil, time.Second)
	if n, err := tr.TryWrite([]byte("frame")); n != 5 || err != nil {
		t.Fatalf("TryWrite over a replayConn = %d, %v; want 5, nil", n, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "frame" {
		t.Fatalf("the peer read %q, %v", buf, err)
	}
}

// TestRefusalSurvivesUnreadBody: a refused request whose body is still
// arriving gets its whole answer, rather than a reset that discards it.
// (Linux on loopback seldom loses an answer to a reset; this pins that the
// answer arrives whole and the lingering close ends.)
func TestRefusalSurvivesUnreadBody(t *testing.T) {
	g := startGateway(t)
	const size = 4 << 20
	conn, br := rawRequest(t, g, fmt.Sprintf("GET /ws HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size))
	go func() { _, _ = conn.Write(make([]byte, size)) }()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "no body") {
		t.Fatalf("%d %q %v", resp.StatusCode, body, err)
	}
}

// TestRefusalIsJSON: the body of a refusal is valid JSON whatever bytes its
// message holds.
func TestRefusalIsJSON(t *testing.T) {
	near, far := tcpPair(t)
	go writeRawError(near, time.Second, http.StatusForbidden, "bad \x01 user \v \U0010ffff")
	resp, err := http.ReadResponse(bufio.NewReader(far), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Error != "bad \x01 user \v \U0010ffff" {
		t.Fatalf("body: %+v, %v", got, err)
	}
}

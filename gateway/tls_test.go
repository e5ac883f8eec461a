package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/internal/testcert"
	"github.com/pushgrid/pushgrid/session"
)

// startTLSGateway is startGatewayWith serving TLS, with a certificate made
// for the test; clients trust it through the returned files.
func startTLSGateway(t *testing.T, cfg Config) (*Gateway, testcert.Files) {
	t.Helper()
	certs := testcert.New(t)
	cfg.TLSCert, cfg.TLSKey = certs.Cert, certs.Key
	return startGatewayWith(t, cfg, session.Config{}), certs
}

// dialTLS opens a TLS connection to g, as a client that trusts certs.
func dialTLS(t *testing.T, g *Gateway, certs testcert.Files) *wsClient {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.Addr().String(), certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &wsClient{conn: conn, br: bufio.NewReader(conn)}
}

// wssClient is a gws client that hands over the frames it reads.
type wssClient struct {
	frames chan map[string]any
	closed chan uint16
}

func (c *wssClient) OnOpen(*gws.Conn)         {}
func (c *wssClient) OnPing(*gws.Conn, []byte) {}
func (c *wssClient) OnPong(*gws.Conn, []byte) {}
func (c *wssClient) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	code := uint16(0)
	if errors.As(err, &ce) {
		code = ce.Code
	}
	c.closed <- code
}

func (c *wssClient) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	var f map[string]any
	if json.Unmarshal(m.Bytes(), &f) == nil {
		c.frames <- f
	}
}

// next returns the next frame of type typ, skipping others.
func (c *wssClient) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-c.frames:
			if f["type"] == typ {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s frame within 5s", typ)
		}
	}
}

// TestWSS: a wss client gets its welcome and exchanges frames, a frame
// larger than a TLS record and a burst among them; on shutdown it gets its
// 1001 and every socket is closed.
func TestWSS(t *testing.T) {
	g, certs := startTLSGateway(t, Config{})
	c := &wssClient{frames: make(chan map[string]any, 256), closed: make(chan uint16, 1)}
	conn, _, err := gws.NewClient(c, &gws.ClientOption{
		Addr:      "wss://" + g.Addr().String() + "/ws?user=alice",
		TlsConfig: certs.ClientConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	go conn.ReadLoop()
	if w := c.next(t, "welcome"); w["user"] != "alice" {
		t.Fatalf("welcome: %v", w)
	}
	if err := conn.WriteString(`{"type":"join","channel":"news"}`); err != nil {
		t.Fatal(err)
	}
	c.next(t, "joined")
	if err := conn.WriteMessage(gws.OpcodeText, paddedPing(60000)); err != nil {
		t.Fatal(err)
	}
	c.next(t, "pong")
	const burst = 100
	for i := 0; i < burst; i++ {
		if err := conn.WriteString(fmt.Sprintf(`{"type":"ping","id":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < burst; i++ {
		if p := c.next(t, "pong"); p["id"] != float64(i) {
			t.Fatalf("pong %d: %v", i, p)
		}
	}

	stopped := make(chan error, 1)
	go func() { stopped <- stopGateway(g) }()
	select {
	case code := <-c.closed:
		if code != 1001 {
			t.Fatalf("closed with %d, want 1001", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not closed within 10s")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestWSSAfterAnotherRequest: over TLS too, a /ws request that follows
// another on the same connection is upgraded, through net/http.
func TestWSSAfterAnotherRequest(t *testing.T) {
	g, certs := startTLSGateway(t, Config{})
	c := dialTLS(t, g, certs)
	c.write(t, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	c.write(t, []byte(upgradeRequest))
	c.handshake(t)
	c.write(t, pingFrames(3))
	for i := 0; i < 3; i++ {
		c.readText(t, `"type":"pong"`)
	}
}

// TestRequestsSeeTLS: the request an upgrade is decided on carries its TLS
// state (r.TLS) on the light path and through net/http alike.
func TestRequestsSeeTLS(t *testing.T) {
	var sawTLS, sawPlain atomic.Int32
	authorize := func(r *http.Request, _ netip.Addr) (session.Identity, error) {
		if r.TLS != nil && r.TLS.HandshakeComplete {
			sawTLS.Add(1)
		} else {
			sawPlain.Add(1)
		}
		return session.Identity{User: "alice"}, nil
	}
	g, certs := startTLSGateway(t, Config{Authorize: authorize})
	light := dialTLS(t, g, certs)
	light.write(t, []byte(upgradeRequest))
	light.handshake(t)
	viaHTTP := dialTLS(t, g, certs)
	viaHTTP.write(t, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"+upgradeRequest))
	resp, err := http.ReadResponse(viaHTTP.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	viaHTTP.handshake(t)
	if sawTLS.Load() != 2 || sawPlain.Load() != 0 {
		t.Fatalf("upgrades with r.TLS: %d, without: %d; want 2, 0", sawTLS.Load(), sawPlain.Load())
	}
}

// TestHTTPS: the HTTP endpoints answer over TLS, as HTTP/1.1 even to a
// client that offers HTTP/2.
func TestHTTPS(t *testing.T) {
	g, certs := startTLSGateway(t, Config{})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig()}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + g.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" || resp.TLS == nil {
		t.Fatalf("/healthz: %d %q, TLS %v", resp.StatusCode, body, resp.TLS != nil)
	}
	cfg := certs.ClientConfig()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	conn, err := tls.Dial("tcp", g.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("negotiated %q, want http/1.1", p)
	}
}

// TestPlaintextOnTLSPort: a client that speaks plain HTTP to the TLS port
// is answered a 400 that says why, one that speaks anything else is
// closed at once, and neither stays counted.
func TestPlaintextOnTLSPort(t *testing.T) {
	g, _ := startTLSGateway(t, Config{})
	for _, req := range []string{upgradeRequest, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"} {
		conn, br := rawRequest(t, g, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: no answer: %v", req, err)
		}
		var body struct{ Error string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusBadRequest ||
			!strings.Contains(body.Error, "HTTPS") {
			t.Fatalf("%q: %d %+v %v, want 400 about HTTPS", req, resp.StatusCode, body, err)
		}
		expectEnd(t, conn, br, 5*time.Second)
	}
	conn, br := rawRequest(t, g, "hello\r\n")
	start := time.Now()
	if got := expectEnd(t, conn, br, 5*time.Second); len(got) != 0 || time.Since(start) > 2*time.Second {
		t.Fatalf("not HTTP: read %q, closed after %v", got, time.Since(start))
	}
	waitFor(t, 5*time.Second, "no socket counted", func() bool { return g.sockets() == 0 })
}

// TestTLSHandshakeTimeout: a client that does not finish its TLS handshake,
// or sends no request after it, is closed once HandshakeTimeout has passed
// since it connected.
func TestTLSHandshakeTimeout(t *testing.T) {
	const hs = 300 * time.Millisecond
	g, certs := startTLSGateway(t, Config{HandshakeTimeout: hs})
	for _, c := range []struct {
		name string
		dial func(t *testing.T) (net.Conn, io.Reader)
	}{
		{"silent", func(t *testing.T) (net.Conn, io.Reader) {
			conn, br := rawRequest(t, g, "")
			return conn, br
		}},
		{"half a ClientHello", func(t *testing.T) (net.Conn, io.Reader) {
			conn, br := rawRequest(t, g, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
			return conn, br
		}},
		{"no request after the handshake", func(t *testing.T) (net.Conn, io.Reader) {
			c := dialTLS(t, g, certs)
			return c.conn, c.br
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			conn, r := c.dial(t)
			expectEnd(t, conn, r, 5*time.Second)
			if d := time.Since(start); d < hs/2 {
				t.Fatalf("closed after %v, before the handshake timeout", d)
			}
			waitFor(t, 5*time.Second, "no socket counted", func() bool { return g.sockets() == 0 })
		})
	}
}

// TestTLSMaxConnections: over TLS, a full node completes the handshake and
// answers 503 {"error":"server full"}; the refusal is not counted, and
// once a client leaves a new one is served.
func TestTLSMaxConnections(t *testing.T) {
	g, certs := startTLSGateway(t, Config{MaxConnections: 1})
	first := dialTLS(t, g, certs)
	first.write(t, []byte(upgradeRequest))
	first.handshake(t)
	refused := dialTLS(t, g, certs)
	refused.write(t, []byte(upgradeRequest))
	resp, err := http.ReadResponse(refused.br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
		body.Error != "server full" {
		t.Fatalf("%d %+v %v, want 503 server full", resp.StatusCode, body, err)
	}
	expectEnd(t, refused.conn, refused.br, 5*time.Second)
	if n := g.sockets(); n != 1 {
		t.Fatalf("%d sockets counted, want 1", n)
	}
	_ = first.conn.Close()
	waitFor(t, 5*time.Second, "a new client is served", func() bool {
		c := dialTLS(t, g, certs)
		c.write(t, []byte(upgradeRequest))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			_ = c.conn.Close()
			return false
		}
		c.readText(t, `"type":"welcome"`)
		return true
	})
}

// TestTLSTransport: a transport over a TLS connection writes nothing to
// the socket behind TLS's back (the peer would read plaintext where it
// expects records and fail): TryWrite sends only the first frame, with the
// handshake response, and Write delivers every buffer, small ones joined
// and ones larger than a record.
func TestTLSTransport(t *testing.T) {
	certs := testcert.New(t)
	pair, err := tls.LoadX509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	near, far := tcpPair(t)
	server := tls.Server(near, &tls.Config{Certificates: []tls.Certificate{pair}})
	clientCfg := certs.ClientConfig()
	clientCfg.ServerName = "localhost"
	client := tls.Client(far, clientCfg)
	handshake := make(chan error, 1)
	go func() { handshake <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-handshake; err != nil {
		t.Fatal(err)
	}

	response := append(make([]byte, 0, 64), "HTTP/1.1 101 Switching Protocols\r\n\r\n"...)
	tr := newTransport(nil, server, response, 5*time.Second)
	var want bytes.Buffer
	want.Write(response)
	if n, err := tr.TryWrite([]byte("welcome")); n != 7 || err != nil {
		t.Fatalf("first TryWrite = %d, %v; want 7, nil", n, err)
	}
	want.WriteString("welcome")
	if n, err := tr.TryWrite([]byte("more")); n != 0 || err != nil {
		t.Fatalf("TryWrite over TLS = %d, %v; want 0, nil (the writer writes it)", n, err)
	}
	var bufs [][]byte
	for i := 0; i < 3000; i++ {
		bufs = append(bufs, []byte(fmt.Sprintf("frame %d;", i)))
	}
	bufs = append(bufs, bytes.Repeat([]byte("L"), 3*tlsRecord+5), []byte("end"))
	for _, b := range bufs {
		want.Write(b)
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, want.Len())
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(client, b)
		got <- b[:n]
	}()
	if err := tr.Write(bufs); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(b), want.Len())
	}
}

// TestTLSConfig: the certificate and key are both set or neither, and New
// refuses files it cannot read or that do not make a pair, naming the key.
func TestTLSConfig(t *testing.T) {
	certs, other := testcert.New(t), testcert.New(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"cert alone", certs.Cert, "", "gateway.tls_key: not set"},
		{"key alone", "", certs.Key, "gateway.tls_cert: not set"},
		{"no cert file", missing, certs.Key, "gateway.tls_cert: open "},
		{"no key file", certs.Cert, missing, "gateway.tls_key: open "},
		{"not a certificate", garbage, certs.Key, "gateway.tls_cert: "},
		{"not a key", certs.Cert, garbage, "gateway.tls_key: "},
		{"a certificate for a key", certs.Cert, certs.Cert, "gateway.tls_key: "},
		{"another's key", certs.Cert, other.Key, "gateway.tls_cert: "},
		{"a pair", certs.Cert, certs.Key, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := New(Config{TLSCert: c.cert, TLSKey: c.key}, newHub(t))
			switch {
			case c.want == "" && (err != nil || g.tls == nil):
				t.Fatalf("New = %v, TLS %v", err, g != nil && g.tls != nil)
			case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
				t.Fatalf("New = %v, want %q", err, c.want)
			}
		})
	}
}

package socketio

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// quietBus is a hub's bus and backend that carry nothing.
type quietBus struct{}

func (quietBus) Subscribe(string) error            { return nil }
func (quietBus) Unsubscribe(string)                {}
func (quietBus) Publish(string, []byte) error      { return nil }
func (quietBus) PublishEvent(string, []byte) error { return nil }
func (quietBus) Listening(string) bool             { return false }
func (quietBus) Send(context.Context, string, string, string, []byte, bool) ([]byte, error) {
	return nil, session.ErrNoHandler
}

// pipeEdge upgrades every request to a socket the test drives: in and
// closed are what the server gave it.
type pipeEdge struct {
	in     func([]byte)
	closed func(error)
	tr     *recordingTransport
}

func (*pipeEdge) Admit(*http.Request) (session.Identity, int, error) {
	return session.Identity{}, http.StatusOK, nil
}
func (*pipeEdge) AllowedOrigin(*http.Request) bool  { return true }
func (*pipeEdge) ClientIP(*http.Request) netip.Addr { return netip.MustParseAddr("127.0.0.1") }
func (*pipeEdge) CountConnections(string, int)      {}
func (e *pipeEdge) Upgrade(_ http.ResponseWriter, _ *http.Request, _ []byte, in func([]byte), closed func(error)) (session.Transport, error) {
	e.in, e.closed = in, closed
	return e.tr, nil
}

// recordingTransport is a socket that takes every write and reports its
// close.
type recordingTransport struct{ closes chan session.Disconnect }

func (*recordingTransport) TryWrite(p []byte) (int, error) { return len(p), nil }
func (*recordingTransport) Write([][]byte) error           { return nil }
func (t *recordingTransport) Close(d session.Disconnect) error {
	t.closes <- d
	return nil
}

// countingRelay answers pipe requests and counts the frames relayed.
type countingRelay struct {
	mu  sync.Mutex
	ins int
}

func (*countingRelay) RelayRequest(context.Context, string, []byte) ([]byte, error) {
	return []byte("ok"), nil
}

func (r *countingRelay) RelayPublish(_ string, data []byte) error {
	if bytes.HasPrefix(data, []byte(opIn+"\n")) {
		r.mu.Lock()
		r.ins++
		r.mu.Unlock()
	}
	return nil
}

// TestPipeFloodClosed: a WebSocket piped to another node's session that
// sends far over the session's rate is closed with 1008 at the node it
// reached, after at most twice the burst of frames went on to the owner;
// frames at the rate all go on.
func TestPipeFloodClosed(t *testing.T) {
	hub, err := session.New(session.Config{Node: "n1", Rate: 100, Burst: 50}, quietBus{}, quietBus{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	edge := &pipeEdge{tr: &recordingTransport{closes: make(chan session.Disconnect, 1)}}
	relay := &countingRelay{}
	s, err := New(Config{Node: "n1"}, hub, edge, relay)
	if err != nil {
		t.Fatal(err)
	}
	s.pipe(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/socket.io/?EIO=4&transport=websocket&sid=n2.x", nil), "n2.x", "n2")
	if edge.in == nil {
		t.Fatal("no upgrade")
	}
	for range 50 { // the burst, then at the rate for a moment
		edge.in([]byte("42[\"chat\",\"c\",1]"))
	}
	for range 5 {
		time.Sleep(10 * time.Millisecond)
		edge.in([]byte("3"))
	}
	select {
	case d := <-edge.tr.closes:
		t.Fatalf("closed at the rate: %v", d)
	default:
	}
	if relay.ins != 55 {
		t.Fatalf("%d frames relayed, want all 55", relay.ins)
	}
	for range 100_000 {
		edge.in([]byte("42[\"chat\",\"c\",1]"))
	}
	select {
	case d := <-edge.tr.closes:
		if d != session.DisconnectRateLimit {
			t.Fatalf("closed with %v, want %v", d, session.DisconnectRateLimit)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a flooding pipe was not closed")
	}
	if limit := 55 + 2*50 + 16 + 1000; relay.ins > limit {
		t.Fatalf("%d frames relayed, want at most %d", relay.ins, limit)
	}
}

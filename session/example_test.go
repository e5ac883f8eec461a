package session_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/pushgrid/pushgrid/session"
)

// auditHandler is a Handler as a Node.js server's handler class would be:
// it greets each connection, refuses shouting, and notes disconnects.
type auditHandler struct {
	session.NopHandler // the methods not overridden do nothing
	mu                 sync.Mutex
	log                []string
}

func (h *auditHandler) OnConnect(c *session.Conn) error {
	c.Send([]byte(`{"type":"motd","text":"be nice"}`))
	return nil
}

func (h *auditHandler) OnMessage(c *session.Conn, f *session.Frame) error {
	if f.Type == session.TypeChat && strings.Contains(string(f.Msg), "!!!") {
		return &session.Error{Code: session.CodeForbidden, Msg: "no shouting"}
	}
	return nil
}

func (h *auditHandler) OnDisconnect(c *session.Conn, _ error) {
	h.mu.Lock()
	h.log = append(h.log, c.User()+" left")
	h.mu.Unlock()
}

// printer is a Transport that prints each frame's payload; a real one is a
// WebSocket (the gateway's).
type printer struct{}

func (printer) TryWrite(p []byte) (int, error) {
	payload := string(p[2:]) // after the 2-byte header of a small text frame
	if strings.Contains(payload, `"type":"welcome"`) {
		payload = "welcome" // its conn id is random
	}
	fmt.Println(payload)
	return len(p), nil
}
func (printer) Write([][]byte) error           { return nil }
func (printer) Close(session.Disconnect) error { return nil }

// nowhere is a Bus and Backend that carry nothing (a one-node sketch; the
// broker package provides the real ones over NATS).
type nowhere struct{}

func (nowhere) Subscribe(string) error            { return nil }
func (nowhere) Unsubscribe(string)                {}
func (nowhere) Publish(string, []byte) error      { return nil }
func (nowhere) PublishEvent(string, []byte) error { return nil }
func (nowhere) Listening(string) bool             { return false }
func (nowhere) Send(context.Context, string, string, string, []byte, bool) ([]byte, error) {
	return nil, session.ErrNoHandler
}

func Example_handler() {
	h := &auditHandler{}
	hub, err := session.New(session.Config{Node: "n1"}, nowhere{}, nowhere{}, h)
	if err != nil {
		panic(err)
	}
	c, _ := hub.Connect(printer{}, session.Identity{User: "alice"}, netip.MustParseAddr("127.0.0.1"))
	hub.Receive(c, []byte(`{"type":"chat","channel":"lobby","msg":"hi!!!","id":1}`))
	hub.ReadEnded(c, nil) // the client went away
	// Shutdown returns once every connection is gone, its OnDisconnect run.
	if err := hub.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(h.log)
	// Output:
	// welcome
	// {"type":"motd","text":"be nice"}
	// {"type":"error","code":"forbidden","msg":"no shouting","id":1}
	// [alice left]
}

package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/lxzan/gws"

	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// greeter is the Go form of a Node push server's handler class: it greets
// every connection, and answers the custom frame "time" itself instead of
// sending it to a backend.
type greeter struct{ session.NopHandler }

func (greeter) OnConnect(c *session.Conn) error {
	c.Send([]byte(`{"type":"greeting","text":"hello ` + c.User() + `"}`))
	return nil
}

func (greeter) OnMessage(c *session.Conn, f *session.Frame) error {
	if f.Type != "time" {
		return nil // the node handles it: join, chat, a backend's type...
	}
	c.Send([]byte(`{"type":"time","id":` + string(f.ID) + `,"now":"2026-12-02T10:00:00Z"}`))
	return session.ErrHandled
}

// Example runs a node with a Handler, as pushgrid serve would run it, and
// talks to it with a WebSocket client.
func Example() {
	cfg := node.DefaultConfig()
	cfg.Node = "example"
	// Ephemeral ports, no admin API, and a store directory of its own,
	// for the example.
	cfg.Gateway.Listen, cfg.NATS.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0", ""
	dir, err := os.MkdirTemp("", "pushgrid-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	cfg.History.Dir = dir
	n, err := node.New(cfg, node.WithHandler(greeter{}), node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	if err := n.Start(context.Background()); err != nil {
		panic(err)
	}
	defer n.Shutdown(context.Background())

	frames := make(chan string, 8)
	client, _, err := gws.NewClient(&printer{frames: frames}, &gws.ClientOption{Addr: "ws://" + n.Addr().String() + "/ws?user=alice"})
	if err != nil {
		panic(err)
	}
	go client.ReadLoop()
	defer client.WriteClose(1000, nil)

	fmt.Println(<-frames) // the welcome
	fmt.Println(<-frames) // OnConnect's greeting
	_ = client.WriteString(`{"type":"time","id":7}`)
	fmt.Println(<-frames)
	// Output:
	// {"type":"welcome","conn":"…","node":"example","user":"alice"}
	// {"type":"greeting","text":"hello alice"}
	// {"type":"time","id":7,"now":"2026-12-02T10:00:00Z"}
}

// printer hands each text frame to frames, the welcome's conn id elided.
type printer struct {
	gws.BuiltinEventHandler
	frames chan string
}

func (p *printer) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := m.Data.String()
	if conn := `"conn":"`; len(s) > 30 && s[:18] == `{"type":"welcome",` {
		i := len(`{"type":"welcome",`) + len(conn)
		j := i
		for j < len(s) && s[j] != '"' {
			j++
		}
		s = s[:i] + "…" + s[j:]
	}
	select {
	case p.frames <- s:
	case <-time.After(5 * time.Second):
	}
}

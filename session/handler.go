package session

// Handler adds behaviour to every connection of a hub, the way a handler
// class did in a Node.js push server. For one connection its methods run
// one at a time, in order; a slow handler delays only that connection's
// frames.
type Handler interface {
	// OnConnect runs after the welcome frame. A non-nil error closes the
	// connection: with that Disconnect if it is one, else with 1008 and the
	// error's text.
	OnConnect(c *Conn) error
	// OnMessage runs for every client frame that decoded and passed the rate
	// limit, before the server handles it. Return nil to let the server
	// handle it, an *Error to refuse it (the client gets that error frame
	// and nothing changes), or ErrHandled when the handler dealt with it.
	OnMessage(c *Conn, f *Frame) error
	// OnDisconnect runs once when the connection is gone, after it has left
	// every channel. reason says why (a Disconnect, or the read error).
	OnDisconnect(c *Conn, reason error)
}

// NopHandler does nothing; embed it and override the methods you need.
type NopHandler struct{}

var _ Handler = NopHandler{}

func (NopHandler) OnConnect(*Conn) error         { return nil }
func (NopHandler) OnMessage(*Conn, *Frame) error { return nil }
func (NopHandler) OnDisconnect(*Conn, error)     {}

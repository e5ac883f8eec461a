package session

// Transport is one client's socket as the session needs it. The gateway
// implements it over a gws connection.
type Transport interface {
	// TryWrite writes as much of p as the socket takes without blocking and
	// returns how much that was. After a partial write the next call is
	// Write, with at least the rest of the frame it cut, or Close if it cut
	// none.
	TryWrite(p []byte) (int, error)
	// Write writes every buffer, blocking until done or failed (the
	// transport bounds how long).
	Write(bufs [][]byte) error
	// Close sends a close frame with d's code and reason, then closes the
	// socket. It is called once, after the last Write.
	Close(d Disconnect) error
}

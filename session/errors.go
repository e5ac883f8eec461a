package session

import "errors"

// Errors of the package. Protocol errors, which clients receive, are
// *Error values with a Code (protocol.go).
var (
	// ErrNoHandler is what a Backend returns when no backend listens for a
	// custom frame's type.
	ErrNoHandler = errors.New("session: no handler for this type")
	// ErrDraining is what Connect returns once Shutdown has begun.
	ErrDraining = errors.New("session: the node is shutting down")
	// ErrHandled, returned by Handler.OnMessage, tells the hub the frame
	// needs nothing more.
	ErrHandled = errors.New("session: frame handled")

	errBadUser = errors.New("session: not a valid user name, or one a client may not claim")
)

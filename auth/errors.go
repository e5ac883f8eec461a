package auth

import "errors"

var (
	// ErrModeNone is what Authenticate returns in mode none, where the
	// gateway names the user from the query and must not call it.
	ErrModeNone = errors.New("auth: mode none authenticates no request")
	// ErrNoRefresh answers a refresh frame in a mode without tokens: the
	// client reconnects to be asked again.
	ErrNoRefresh = errors.New("auth: refresh is not available")
)

// msgUnavailable is the one text a client sees when the hook could not
// decide, whatever the reason: the reason is for the node's log only.
const msgUnavailable = "auth backend unavailable"

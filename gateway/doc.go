// Package gateway is pushgrid's network edge: HTTP and WebSocket (gws) on
// SO_REUSEPORT worker listeners steered by package sticky, over TLS when
// Config.TLSCert and TLSKey are set (each handshake on its connection's
// goroutine, never in an accept loop), identity and auth before the
// upgrade, the socket side of each connection's writes, the health,
// readiness and metrics endpoints, the demo page and the admin API (behind
// a bearer token when it has one). On shutdown it stops accepting
// (StopAccepting) and waits for its sockets to close (Shutdown); draining
// the connections between the two is the hub's job, and the node's to
// order.
//
// It also keeps hostile clients in bounds before their bytes reach gws or
// the hub: a ceiling on open connections (answered 503 past it), timeouts
// for every HTTP request and idle keep-alive connection, a frame reader
// that hands gws whole frames only and bounds how long one may take to
// arrive, and a lingering close after every close frame, so that a client
// that has not read yet still finds it.
//
// It serves handlers mounted on its port too (Mount: the Socket.IO
// server), and gives them what /ws has (edge.go): the same admission
// (Admit, AllowedOrigin, ClientIP), and sockets (Upgrade) held to the same
// bounds and limits and waited for by Shutdown, whose frames go to the
// handler instead of the hub.
//
// It does not own the protocol: every frame a /ws client sends goes to a
// session.Hub, and every byte a client receives was framed by the hub or
// by the handler that upgraded its socket.
//
// Gateway methods are safe to call from several goroutines; Shutdown may be
// called more than once.
package gateway

// Package gateway is pushgrid's network edge: HTTP and WebSocket (gws) on
// SO_REUSEPORT worker listeners steered by package sticky, identity and
// auth before the upgrade, the socket side of each connection's writes, the
// health, readiness and metrics endpoints, the demo page, the admin API and
// graceful drain.
//
// It does not own the protocol: every frame a client sends goes to a
// session.Hub, and every byte a client receives was framed by it.
//
// Gateway methods are safe to call from several goroutines; Shutdown may be
// called more than once.
package gateway

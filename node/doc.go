// Package node is one pushgrid node, assembled and run: the broker (an
// embedded NATS server in the cluster, or a connection to an existing
// NATS), the session hub (the protocol and every client connection), the
// WebSocket gateway and the admin API. It is what pushgrid serve runs, and
// what a Go program imports to run a node of its own, with a
// session.Handler that adds behaviour to every connection, the way a
// handler class did in a Node.js push server:
//
//	cfg := node.DefaultConfig()
//	cfg.Node = "web-1"
//	n, err := node.New(cfg, node.WithHandler(myHandler{}))
//	if err != nil { ... }
//	if err := n.Start(ctx); err != nil { ... }
//	defer n.Shutdown(context.Background())
//
// New checks the configuration and starts nothing; Start starts the parts
// in order (broker, hub, gateway, admin) and Shutdown stops them in
// reverse: the gateway stops taking clients, the hub drains and closes its
// connections (gateway.drain, then 1001), the sockets finish closing, the
// admin API stops and the node leaves the cluster.
//
// Config holds every configuration key, each declared once in the struct
// tags of its package's Config (see the schema package): DefaultConfig has
// the same defaults as the command line.
//
// Every method of Node is safe to call from several goroutines.
package node

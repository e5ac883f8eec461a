// Package broker is pushgrid's message bus: the NATS server embedded in every
// node, the routes that join nodes into one cluster, the node's own NATS
// connection, the subject scheme of PROTOCOL.md §2 (subjects.go, the one
// place subjects are built), interest counting (one NATS subscription per
// channel per node however many local members), the node heartbeat and the
// live view of the cluster.
//
// A channel costs the node no goroutine: every channel subscription feeds
// one shared intake, and one goroutine hands each message, in order, to the
// Receiver, which must not block (channels.go says how, and where its
// limits are). Start refuses a node name that a live node of the cluster
// already has (claim.go). Who may use the embedded server is decided in
// access.go: the node's own connection may do anything, a backend (with
// nats.token, when set) only what the protocol gives backends, and a route
// only with nats.cluster_secret; TLS covers the client port and the
// routes. The embedded server's log goes to slog, with a cluster mistake
// said once in pushgrid's words instead of once a second (natslog.go).
//
// With Config.URL set it embeds nothing and runs the same API over a
// connection to an existing NATS deployment.
//
// It knows nothing of WebSockets or client frames: what arrives for this
// node goes to a Receiver, and what the node sends is opaque bytes.
//
// Every method of Broker is safe to call from several goroutines.
package broker

// Package bench is pushgrid's load generator (`pushgrid bench`): it opens
// many WebSocket subscribers to any cluster that speaks PROTOCOL.md's join
// and channel fanout, natively (§1) or as Socket.IO clients (§8,
// Config.Proto), publishes timestamped messages over NATS, and reports
// connect time, deliveries per second, loss, latency percentiles,
// disconnects and errors, and, given the server's pid on the same machine,
// the server's CPU time and memory.
//
// Every phase is bounded in count and time. Run drives one benchmark at a
// time; nothing in the package is shared between runs.
package bench

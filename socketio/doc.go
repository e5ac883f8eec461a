// Package socketio serves Socket.IO v4 clients (socket.io-client 4.x, which
// speaks Engine.IO protocol 4 and Socket.IO protocol 5) natively, as
// PROTOCOL.md §8 describes.
//
// packet.go owns the wire format of both layers: Engine.IO packets (one per
// WebSocket text frame, or several in a long-polling body, joined by the
// record separator 0x1e) and the Socket.IO packets that Engine.IO message
// packets carry. Its decoders bound their input, refuse what the reference
// parsers (engine.io-parser, socket.io-parser) refuse and what two readers
// could take two ways, and check JSON payloads (UTF-8, nesting depth, no key
// twice in an object) without building Go values: event arguments stay raw
// JSON, to be forwarded as they came. Its encoders append to the caller's
// buffer, so a packet for many connections is built once, without
// allocating. packetjson.go holds the JSON checks and string escaping they
// share.
//
// Not supported, by design: namespaces other than "/" (decoded, so that the
// caller can refuse them by name) and binary data — Engine.IO 'b' packets are
// decoded and marked Binary, BINARY_EVENT and BINARY_ACK are refused with
// ErrBinary — since pushgrid carries JSON text only.
//
// Concurrency: the functions of packet.go keep no state and are safe to call
// from several goroutines, as long as no one writes to a buffer while
// another reads it.
package socketio

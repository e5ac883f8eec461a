// Package auth decides who a client is before its WebSocket upgrade
// (PROTOCOL.md §4), so that a refused client gets an HTTP status it can
// act on (401, 403 or 503 with {"error":"..."}) instead of a socket that
// opens and then closes, and so that no frame of an unknown client ever
// reaches the hub.
//
// Two ways decide: a signed JWT (auth.mode jwt), checked with
// github.com/golang-jwt/jwt/v5 against one configured key whose type fixes
// the algorithms a token may use; or a backend (auth.mode hook), asked
// with a NATS request on <prefix>.auth carrying the request's remote
// address, path, query and headers as plain JSON, so that a backend in any
// language can decide from its own cookies or sessions. The package does
// not speak NATS itself: the broker hands New the request function.
//
// It owns the token sources (TokenFrom), the JWT rules, the hook's request
// and reply formats, and the refusal texts. It does not own the user name
// rules or channel patterns (package session), the client IP behind
// trusted proxies or the HTTP answer (package gateway), or expiry: the
// session closes a connection whose Identity.Expires plus Leeway passed.
// With auth.mode none it decides nothing: the gateway reads ?user= itself.
//
// An Authenticator is read-only after New: Authenticate and Refresh are
// safe to call from several goroutines.
package auth

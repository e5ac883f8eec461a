// Package sticky is connection-hash stickiness: the key of a request (its
// client IP, honouring trusted proxies' X-Forwarded-For), the SO_REUSEPORT
// worker listeners with the kernel program that steers every connection
// from one client IP to the same worker, and the rendezvous hash that names
// the owner node of a key among the live nodes.
//
// It does not serve anything: it hands listeners to the gateway.
//
// Every function is safe to call from several goroutines; Attach must not
// race with closing the listeners it is given.
package sticky

// Package loopback tells whether a listen address is reachable only from
// this host. A node refuses to open a port beyond loopback without its
// lock (admin.token, nats.token, nats.cluster_secret), and warns when its
// gateway is reachable without auth.
package loopback

import (
	"net"
	"net/netip"
	"strings"
)

// Only reports whether the listen address hostport ("host:port") binds
// loopback only: a loopback IP, or the name localhost. An empty host, an
// unspecified address (0.0.0.0, ::), any other IP and any other name are
// beyond loopback: a name may resolve anywhere.
func Only(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

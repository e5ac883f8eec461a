package broker

import (
	"fmt"
	"net"
)

// freePort is a port free on host now, for a listener whose port must be
// known before the server that opens it starts.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// dialHost is where this host reaches a listener bound to host: host
// itself, or the loopback address for an unspecified one.
func dialHost(host string) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return host
}

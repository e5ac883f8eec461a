package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Browsers send the Origin of the page that opens a WebSocket and let any
// page open one to any host, with the user's cookies: without a check, a
// page on another site could act as the user (cross-site WebSocket
// hijacking). PROTOCOL.md §3a: by default only pages of the gateway's own
// host, and clients that send no Origin (not browsers), may connect;
// Config.Origins names others.

// originPolicy decides which Origins may connect.
type originPolicy struct {
	any     bool
	allowed []originPattern
}

// originPattern is one allowed origin: a scheme and a host with its port,
// where a host starting with "*." matches every subdomain of the rest.
type originPattern struct {
	scheme string
	host   string // lower case, with the port (the scheme's default if none was given)
}

// parseOrigins checks Config.Origins: "*", or origins such as
// "https://app.example.com", "http://localhost:3000",
// "https://*.example.com".
func parseOrigins(list []string) (originPolicy, error) {
	var p originPolicy
	for _, o := range list {
		if o == "*" {
			p.any = true
			continue
		}
		scheme, host, err := splitOrigin(strings.Replace(o, "://*.", "://wildcard.", 1))
		if err != nil {
			return p, fmt.Errorf("%q: %v (want \"*\" or an origin such as https://app.example.com or https://*.example.com)", o, err)
		}
		if strings.Contains(o, "://*.") {
			host = "*." + strings.TrimPrefix(host, "wildcard.")
		}
		p.allowed = append(p.allowed, originPattern{scheme: scheme, host: host})
	}
	return p, nil
}

// splitOrigin returns an origin's scheme and host:port, lower case.
func splitOrigin(origin string) (scheme, host string, err error) {
	u, err := url.Parse(origin)
	if err != nil {
		return "", "", err
	}
	scheme = strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("not just a scheme and a host")
	}
	return scheme, withPort(strings.ToLower(u.Host), scheme), nil
}

// withPort adds the scheme's default port to a host that has none.
func withPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// allows reports whether a request may connect by its Origin header: none
// (not a browser), the gateway's own host, or one the policy names.
func (p originPolicy) allows(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	scheme, host, err := splitOrigin(origin)
	if err != nil {
		return false // "null" (a sandboxed page or a file) among others
	}
	if host == withPort(strings.ToLower(r.Host), scheme) {
		return true
	}
	for _, a := range p.allowed {
		if a.scheme != scheme {
			continue
		}
		if a.host == host {
			return true
		}
		if rest, ok := strings.CutPrefix(a.host, "*"); ok && strings.HasSuffix(host, rest) && len(host) > len(rest) {
			return true
		}
	}
	return false
}

package broker

import (
	"crypto/subtle"
	"crypto/tls"
	"net/url"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Who may use the embedded NATS server, and how.
//
// Client port. Two kinds of client connect to it. The node itself, in
// process, presents nodeUser and a password made for this run, which never
// leaves the process; it may do anything. Every other client is a backend:
// it presents Config.Token when one is set, and may do only what
// PROTOCOL.md §2 gives backends (Subjects.backendPublish and its
// neighbours), plus answer once each request it receives. So no client can
// publish a heartbeat or a name claim, answer a claim, or read a reply
// meant for a node (a node's replies go to Subjects.inbox).
//
// Routes. A node with Config.ClusterSecret presents it on every route it
// dials (the seeds' URLs carry it, and NATS adds it to the routes it learns
// of from peers) and accepts only routes that present it. A node without
// one accepts only routes that present none. So a node whose secret is
// missing or different is kept out from both sides: its peers refuse the
// routes it dials, and it refuses the routes they dial. Peers do learn of
// it (NATS gossips a route's INFO before the route is authorized) and dial
// it; NATS adds the credential to such a route only when the peer's INFO
// asks for one, so every node asks, secret or not (Cluster.Username).
// The refusing side says why in pushgrid's words (routeAuth); the refused
// side is told "Authorization Violation" (natslog.go says it once).
//
// TLS. With Config.TLSCert the client port requires TLS (the node's own
// connection is in process, which NATS lets choose), and routes require it
// both ways: each side verifies the other's certificate against
// Config.TLSCA.
const (
	nodeUser    = "pushgrid-node"
	backendUser = "backend"
	routeUser   = "pushgrid"
)

// clientAuth decides who a client of the client port is.
type clientAuth struct {
	token        string // Config.Token; "" lets any client in as a backend
	nodePassword string
	backend      *server.Permissions
}

var _ server.Authentication = (*clientAuth)(nil)

func newClientAuth(token, nodePassword string, s Subjects) *clientAuth {
	return &clientAuth{
		token:        token,
		nodePassword: nodePassword,
		backend: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: s.backendPublish()},
			Subscribe: &server.SubjectPermission{Allow: s.backendSubscribe(), Deny: s.backendDeny()},
			// A backend answers a custom frame's request or an auth hook
			// through the reply subject, under the node's inbox.
			Response: &server.ResponsePermission{
				MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
				Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION,
			},
		},
	}
}

func (a *clientAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o.Username == nodeUser && same(o.Password, a.nodePassword) {
		c.RegisterUser(&server.User{Username: nodeUser})
		return true
	}
	if a.token != "" && !same(o.Token, a.token) {
		return false
	}
	c.RegisterUser(&server.User{Username: backendUser, Permissions: a.backend})
	return true
}

// routeAuth decides whether a peer's route may join: the password it
// presents is its cluster secret, "" for none.
type routeAuth struct {
	secret string // Config.ClusterSecret
	log    *natsLogger
}

var _ server.Authentication = routeAuth{}

func (a routeAuth) Check(c server.ClientAuthentication) bool {
	theirs := c.GetOpts().Password
	var why string
	switch {
	case same(theirs, a.secret):
		return true
	case a.secret == "":
		why = "presents a nats.cluster_secret, and this node has none"
	case theirs == "":
		why = "presents no nats.cluster_secret"
	default:
		why = "presents another nats.cluster_secret"
	}
	addr := ""
	if ra := c.RemoteAddress(); ra != nil {
		addr = ra.String()
	}
	a.log.routeRefused(addr, c.GetID(), why)
	return false
}

// same compares secrets in constant time.
func same(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// routeURLs are the seeds as the NATS server dials them: with the cluster
// secret, which it does not add to routes it is given (only to those it
// learns of).
func routeURLs(seeds []string, secret string) []*url.URL {
	urls := server.RoutesFromStr(strings.Join(seeds, ","))
	if secret != "" {
		for _, u := range urls {
			u.User = url.UserPassword(routeUser, secret)
		}
	}
	return urls
}

// clientTLS is the client port's TLS: backends are not asked for a
// certificate; nats.token is what admits them.
func (c *Config) clientTLS() (*tls.Config, error) {
	return server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey})
}

// routeTLS is the routes' TLS. A route is dialled by one node and accepted
// by the other, and each verifies the other's certificate against the CA,
// as a cluster tls block of a NATS configuration does.
func (c *Config) routeTLS() (*tls.Config, error) {
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey, CaFile: c.TLSCA, Verify: true})
	if err != nil {
		return nil, err
	}
	tc.RootCAs = tc.ClientCAs
	return tc, nil
}

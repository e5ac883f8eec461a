package broker

import "strings"

// DefaultPrefix is the first token of every pushgrid subject.
const DefaultPrefix = "push"

// Subjects builds the subjects of PROTOCOL.md §2 under one prefix. It is the
// only place subject strings are put together.
type Subjects struct{ Prefix string }

// Channel is where everything for the members of channel c goes.
func (s Subjects) Channel(c string) string { return s.chanPrefix() + c }

func (s Subjects) chanPrefix() string { return s.Prefix + ".chan." }

// Live is where a history channel's stored messages are republished, with
// their sequence in the Nats-Sequence header: a subject of the nodes' own.
func (s Subjects) Live(c string) string { return s.livePrefix() + c }

func (s Subjects) livePrefix() string { return s.Prefix + ".live.chan." }

// User is where everything for every connection of user u goes.
func (s Subjects) User(u string) string { return s.Prefix + ".user." + u }

// Conn is where everything for the one connection with id goes.
func (s Subjects) Conn(id string) string { return s.Prefix + ".conn." + id }

// All reaches every connection on every node.
func (s Subjects) All() string { return s.Prefix + ".all" }

// Recv is where the gateway publishes custom client frames of type t.
func (s Subjects) Recv(t string) string { return s.Prefix + ".recv." + t }

// Event is where the gateway publishes an event: connect, disconnect,
// join.<channel>, leave.<channel>.
func (s Subjects) Event(name string) string { return s.Prefix + ".events." + name }

// Node is where node n publishes its heartbeat.
func (s Subjects) Node(n string) string { return s.Prefix + ".node." + n }

// Auth is where a node asks a backend who a client is, before the
// upgrade, in auth.mode = "hook".
func (s Subjects) Auth() string { return s.Prefix + ".auth" }

// claim is where a starting node named n asks whether a live node already
// has its name (see claim.go). It is not under the heartbeat wildcard
// <prefix>.node.*, which has one token fewer.
func (s Subjects) claim(n string) string { return s.Prefix + ".node." + n + ".claim" }

// sync is where node n asks every other node to answer once its server
// has n's subscriptions so far (see sync.go). Like claims, it is not under
// the heartbeat wildcard.
func (s Subjects) sync(n string) string { return s.Prefix + ".node." + n + ".sync" }

// Wildcards a node subscribes to once: users (names may hold dots), conns
// (ids are one token), node heartbeats and name claims.
func (s Subjects) allUsers() string  { return s.Prefix + ".user.>" }
func (s Subjects) allConns() string  { return s.Prefix + ".conn.*" }
func (s Subjects) allNodes() string  { return s.Prefix + ".node.*" }
func (s Subjects) allClaims() string { return s.Prefix + ".node.*.claim" }
func (s Subjects) allSyncs() string  { return s.Prefix + ".node.*.sync" }

// inbox prefixes the reply subjects of the node's own requests. It is not
// _INBOX, which backends may subscribe to: only nodes read what answers a
// node (a backend's reply to a custom frame, a node's to a claim).
func (s Subjects) inbox() string { return s.Prefix + "._INBOX" }

// What a backend, any client of a node's NATS client port, may do
// (PROTOCOL.md §2; access.go applies it): publish what reaches clients and
// the node API, and subscribe to what nodes publish for backends and to
// its own inboxes. backendDeny takes back what the wildcards of
// backendSubscribe would give of the nodes' own subjects: name claims and
// interest barriers, which a backend could otherwise answer for a node.
func (s Subjects) backendPublish() []string {
	return []string{s.Prefix + ".chan.>", s.allUsers(), s.Prefix + ".conn.>", s.All(), s.Prefix + ".api.>"}
}

func (s Subjects) backendSubscribe() []string {
	return []string{s.Prefix + ".recv.>", s.Prefix + ".events.>", s.Auth(), s.Prefix + ".node.>", "_INBOX.>"}
}

func (s Subjects) backendDeny() []string { return []string{s.allClaims(), s.allSyncs()} }

// key returns what follows kind's prefix in subject ("alice" for
// push.user.alice and kind "user").
func (s Subjects) key(subject, kind string) (string, bool) {
	return strings.CutPrefix(subject, s.Prefix+"."+kind+".")
}

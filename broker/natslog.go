package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"time"
)

// natsLogger sends the embedded NATS server's log lines to slog.
//
// A cluster mistake makes the server log the same refusal on every route
// retry, about once a second on each side, for as long as it lasts. So:
//
//   - refusals it recognises (a cluster name mismatch, a duplicate node
//     name, a route refused for its cluster secret: routeRefused on the
//     refusing side, "Authorization Violation" on the refused one) are
//     said in pushgrid's words, naming the config key;
//   - the other lines of a refused connection (its close, the server's
//     follow-up error) are dropped: the refusal said it all;
//   - "Route connection created" from a host whose routes are being refused
//     is a retry, and repeats like a warning does;
//   - a repeating line (every warning and error, our words included) is
//     logged the first time, then at most once per repeatEvery, with how
//     many were suppressed meanwhile.
//
// What makes two lines the same kind is the line without what changes on
// every retry and says nothing: the connection's port and id, the attempt
// number and the ports of a socket error. The peer's host and every other
// value stay in the key, so two peers, or two cluster names, are two kinds
// even when they share a format.
type natsLogger struct {
	log     *slog.Logger
	cluster string // this node's cluster name
	every   time.Duration
	now     func() time.Time

	mu       sync.Mutex
	clusters map[string]string     // peer address → its cluster name, from Start's look at the seeds
	refused  map[string]time.Time  // connections refused (by "addr - rid:N"): their other lines are dropped
	failing  map[string]time.Time  // hosts whose routes were refused, when last
	seen     map[string]*repeating // by kind
}

type repeating struct {
	last       time.Time // logged
	suppressed int       // since last
}

const (
	repeatEvery = time.Minute
	retryKind   = "route retry|"
	// maxKinds bounds the maps above; past it, entries older than
	// repeatEvery are forgotten, and while none is that old a new kind is
	// logged but not remembered (the maps never grow past it).
	maxKinds = 1024
)

// Attribute keys of the lines said in pushgrid's words.
const (
	keyPeer        = "peer"
	keyCluster     = "cluster_name"
	keyPeerCluster = "peer_cluster_name"
	keyNode        = "node_name"
	keySuppressed  = "suppressed"
)

var (
	// "127.0.0.1:40112 - rid:7 - text": a connection's line.
	connLine = regexp.MustCompile(`^(\S+) - ([a-z]+[^\s:]*:\d+) - (.*)$`)
	// Accepting side: the remote's name first. Connecting side: the remote
	// echoes the refusal, so its name is second.
	clusterRefusal = regexp.MustCompile(`^(Route Error ')?Rejecting connection, cluster name "(.*)" does not match "(.*)"'?$`)
	duplicateName  = regexp.MustCompile(`^Remote server has a duplicate name: "(.*)"$`)
	attemptNumber  = regexp.MustCompile(`\(attempt \d+\)`)
	// "127.0.0.1:43198->127.0.0.1:6222" in a socket error: the ports
	// change with every retry.
	socketPair = regexp.MustCompile(`(\S+?):\d+->(\S+?):\d+`)
)

func newNatsLogger(log *slog.Logger, cluster string) *natsLogger {
	return &natsLogger{
		log: log, cluster: cluster, every: repeatEvery, now: time.Now,
		clusters: make(map[string]string),
		refused:  make(map[string]time.Time),
		failing:  make(map[string]time.Time),
		seen:     make(map[string]*repeating),
	}
}

// peerCluster records the cluster name of the server at addr (host:port as
// the NATS server's lines spell it), to name it when its routes fail.
func (l *natsLogger) peerCluster(addr, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.clusters) < maxKinds {
		l.clusters[addr] = name
	}
}

func (l *natsLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v...) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v...) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *natsLogger) logf(level slog.Level, format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	var conn, addr, host, body string
	if m := connLine.FindStringSubmatch(line); m != nil {
		conn, addr, body = m[1]+" - "+m[2], m[1], m[3]
		host = addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
	} else {
		body = line
	}
	now := l.now()

	l.mu.Lock()
	msg, kind, attrs := line, "", []any(nil)
	refusal := true
	switch m := clusterRefusal.FindStringSubmatch(body); {
	case m != nil || body == "Router connection closed: Cluster Name Conflict":
		level = slog.LevelError
		theirs, peer := "", addr
		switch {
		case m == nil: // connecting side, the refusal not echoed (yet)
			theirs = l.clusters[addr]
		case m[1] == "": // accepting side: the port is the peer's own
			theirs, peer = m[2], host
		default:
			theirs = m[3]
		}
		if theirs == "" {
			msg = fmt.Sprintf("route refused: the node at %s has another nats.cluster_name than this node's %q; "+
				"every node of a cluster needs the same nats.cluster_name", peer, l.cluster)
		} else {
			msg = fmt.Sprintf("route refused: the node at %s has nats.cluster_name %q, this node has %q; "+
				"every node of a cluster needs the same nats.cluster_name", peer, theirs, l.cluster)
		}
		kind = "cluster name|" + host + "|" + theirs
		attrs = []any{keyPeer, peer, keyCluster, l.cluster, keyPeerCluster, theirs}
	case duplicateName.MatchString(body) || body == "Router connection closed: Duplicate Server Name":
		level = slog.LevelError
		name := ""
		if m := duplicateName.FindStringSubmatch(body); m != nil {
			name = m[1]
		}
		msg = fmt.Sprintf("route refused: the node at %s has this node's name %q; every node needs its own name (node)", host, name)
		kind = "duplicate name|" + host
		attrs = []any{keyPeer, host, keyNode, name}
	case body == "Route Error 'Authorization Violation'":
		// The peer refused the route this node dialled: routeAuth is the
		// only authorization of pushgrid's routes.
		level = slog.LevelError
		msg = fmt.Sprintf("route to nats://%s refused: authorization violation: is nats.cluster_secret the same on every node?", addr)
		kind = "cluster secret dialled|" + addr
		attrs = []any{keyPeer, addr}
	default:
		refusal = false
	}
	drop := false
	switch {
	case conn != "" && !l.refused[conn].IsZero():
		// A refused connection's other lines, or its refusal said twice.
		drop = true
	case refusal:
		l.refusal(conn, host, now)
	case body == "Route connection created" && now.Sub(l.failing[host]) < l.every:
		kind = retryKind + host
	case level >= slog.LevelWarn:
		kind = level.String() + "|" + host + "|" + socketPair.ReplaceAllString(attemptNumber.ReplaceAllString(body, "(attempt N)"), "$1->$2")
	}
	if kind != "" && !drop {
		ok, suppressed := l.admit(kind, now)
		drop = !ok
		if suppressed > 0 {
			attrs = append(attrs, keySuppressed, suppressed)
		}
	}
	l.mu.Unlock()

	if !drop {
		l.log.Log(context.Background(), level, msg, attrs...)
	}
}

// routeRefused says why routeAuth refused the route from addr, whose
// NATS connection id is id, and keeps the server's own lines about it out.
func (l *natsLogger) routeRefused(addr string, id uint64, why string) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	now := l.now()
	l.mu.Lock()
	// The connection as the server's lines name it ("addr - rid:N").
	l.refusal(fmt.Sprintf("%s - rid:%d", addr, id), host, now)
	ok, suppressed := l.admit("cluster secret|"+host+"|"+why, now)
	l.mu.Unlock()
	if !ok {
		return
	}
	attrs := []any{keyPeer, host}
	if suppressed > 0 {
		attrs = append(attrs, keySuppressed, suppressed)
	}
	l.log.Error(fmt.Sprintf("route refused: the node at %s %s; every node of a cluster needs the same nats.cluster_secret", host, why), attrs...)
}

// refusal records that the server refused connection conn from host: its
// other lines are dropped, and host's next route connections are retries.
// l.mu is held.
func (l *natsLogger) refusal(conn, host string, now time.Time) {
	l.remember(l.refused, conn, now)
	l.remember(l.failing, host, now)
	if l.seen[retryKind+host] == nil {
		// This connection's "Route connection created" was logged just
		// before: the retries' are its repeats.
		l.admit(retryKind+host, now)
	}
}

// admit reports whether a line of kind is logged now and, if so, how many
// of its kind were suppressed since it last was. l.mu is held.
func (l *natsLogger) admit(kind string, now time.Time) (bool, int) {
	r := l.seen[kind]
	if r == nil {
		if len(l.seen) >= maxKinds {
			for k, r := range l.seen {
				if now.Sub(r.last) >= l.every {
					delete(l.seen, k)
				}
			}
		}
		if len(l.seen) < maxKinds {
			l.seen[kind] = &repeating{last: now}
		}
		return true, 0
	}
	if now.Sub(r.last) < l.every {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// remember sets m[k] = now, forgetting entries older than l.every first
// when m is full. l.mu is held.
func (l *natsLogger) remember(m map[string]time.Time, k string, now time.Time) {
	if k == "" {
		return
	}
	if len(m) >= maxKinds {
		for k, t := range m {
			if now.Sub(t) >= l.every {
				delete(m, k)
			}
		}
	}
	if _, known := m[k]; known || len(m) < maxKinds {
		m[k] = now
	}
}

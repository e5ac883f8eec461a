package socketio

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// Edge is what the server needs from the gateway it is mounted on: the
// admission and identity of a client as for the native /ws, and WebSocket
// upgrades whose sockets it reads itself.
type Edge interface {
	// Admit decides whether r may open a session, and who it is. On
	// refusal status is the HTTP status and err says why.
	Admit(r *http.Request) (id session.Identity, status int, err error)
	// AllowedOrigin reports whether a browser page at r's Origin may use
	// the gateway; true when r has none.
	AllowedOrigin(r *http.Request) bool
	// ClientIP is r's client address, after trusted proxies.
	ClientIP(r *http.Request) netip.Addr
	// Upgrade upgrades r to a WebSocket: first, if not nil, is a frame
	// written with the 101 response; its text messages go to in, in
	// order, on one goroutine (in copies what it keeps); closed is called
	// once when the socket has ended. The transport writes complete
	// WebSocket frames.
	Upgrade(w http.ResponseWriter, r *http.Request, first []byte, in func(data []byte), closed func(error)) (session.Transport, error)
	// CountConnections adds delta to the hub connections counted under
	// transport in the connections gauge.
	CountConnections(transport string, delta int)
}

// Engine.IO's error answers, by the codes its clients know.
var (
	errTransportUnknown = engineError{http.StatusBadRequest, 0, "Transport unknown"}
	errSessionUnknown   = engineError{http.StatusBadRequest, 1, "Session ID unknown"}
	errBadRequest       = engineError{http.StatusBadRequest, 3, "Bad request"}
	errForbidden        = engineError{http.StatusForbidden, 4, "Forbidden"}
	errProtocol         = engineError{http.StatusBadRequest, 5, "Unsupported protocol version"}
)

// engineError is an Engine.IO error answer: {"code":C,"message":M}.
type engineError struct {
	status  int
	code    int
	message string
}

func (e engineError) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{e.code, e.message})
}

// Server serves Socket.IO clients of one hub. Every session lives on the
// node that opened it, which its id names.
type Server struct {
	cfg  Config
	hub  *session.Hub
	edge Edge
	log  *slog.Logger
	// maxPacket bounds one Socket.IO packet: a native frame's bound, plus
	// what the event's envelope adds.
	maxPacket int

	relayTo Relay // nil: a node alone, sessions of other nodes are unknown

	pipesMu sync.Mutex
	pipes   map[string]*probeSocket // guarded by pipesMu; sockets piped here from other nodes, by pipe id
	ends    map[string]*pipeEnd     // guarded by pipesMu; sockets here piped to other nodes, by pipe id

	mu       sync.Mutex
	sessions map[string]*engineSession // guarded by mu
	closed   bool                      // guarded by mu
	live     sync.WaitGroup            // sessions not yet ended
}

// New checks cfg and returns a server for hub behind edge, reaching the
// owners of other nodes' sessions through relay (nil for a node alone).
// The node hands what other nodes relay to it to HandleRelay.
func New(cfg Config, hub *session.Hub, edge Edge, relay Relay) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if !session.ValidNode(cfg.Node) {
		return nil, errors.New("socketio: a valid node name is required")
	}
	return &Server{cfg: cfg, hub: hub, edge: edge, log: cfg.Logger, relayTo: relay,
		maxPacket: hub.Config().MaxMessageBytes + 256, sessions: make(map[string]*engineSession),
		pipes: make(map[string]*probeSocket), ends: make(map[string]*pipeEnd)}, nil
}

// Path is where the server is to be mounted.
func (s *Server) Path() string { return s.cfg.Path }

// TakesUpgrade reports whether target, a GET request's target as sent (path
// and query), asks for the server's WebSocket transport: the gateway's
// light path then reads it without net/http (gateway.MountUpgrades), which
// costs a WebSocket client's connect a third less CPU. A false answer
// changes nothing but the path: the request comes through net/http.
func (s *Server) TakesUpgrade(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	if path != s.cfg.Path {
		return false
	}
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "transport=websocket" {
			return true
		}
	}
	return false
}

// ServeHTTP serves one Engine.IO request: a handshake (no sid), a poll
// (GET), a post of packets (POST) or a WebSocket, new or upgrading a
// session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.cors(w, r) {
		return
	}
	q := r.URL.RawQuery
	if queryValue(q, "EIO") != "4" {
		errProtocol.write(w)
		return
	}
	transport := queryValue(q, "transport")
	if transport != "polling" && transport != "websocket" {
		errTransportUnknown.write(w)
		return
	}
	sid := queryValue(q, "sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			errBadRequest.write(w)
			return
		}
		s.open(w, r, transport == "websocket")
		return
	}
	es := s.session(sid)
	if es == nil {
		if owner := OwnerOf(sid); owner != "" && owner != s.cfg.Node {
			s.relay(w, r, sid, owner, transport)
			return
		}
		errSessionUnknown.write(w)
		return
	}
	switch {
	case transport == "websocket" && r.Method == http.MethodGet:
		es.upgrade(w, r)
	case transport == "polling" && r.Method == http.MethodGet:
		es.poll(w, r)
	case transport == "polling" && r.Method == http.MethodPost:
		es.post(w, r)
	default:
		errBadRequest.write(w)
	}
}

// queryValue is the first value of key in a raw query, unescaped, as
// url.Values.Get of the parsed query has it ("" for a bad escape), without
// a map for the three values a request is asked.
func queryValue(rawQuery, key string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if strings.Contains(pair, ";") {
			continue // as url.ParseQuery: such a pair is an error, and skipped
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != key {
			continue
		}
		v, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		return v
	}
	return ""
}

// cors answers what a browser page of another origin needs, and refuses
// pages of origins gateway.origins does not allow; it reports whether the
// request goes on.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Method != http.MethodOptions || writeNoContent(w)
	}
	if !s.edge.AllowedOrigin(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "{\"error\":\"origin not allowed\"}\n")
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
		h.Set("Access-Control-Max-Age", "600")
		return writeNoContent(w)
	}
	return true
}

func writeNoContent(w http.ResponseWriter) bool {
	w.WriteHeader(http.StatusNoContent)
	return false
}

// newSID is a session id: the owner node, '.', and 20 random letters and
// digits. The owner is readable from the id, so that any node can send a
// request to the node that holds the session.
func (s *Server) newSID() string {
	return s.cfg.Node + "." + rand.Text()[:20]
}

// OwnerOf is the node a session id names, "" when it names none.
func OwnerOf(sid string) string {
	node, _, ok := strings.Cut(sid, ".")
	if !ok || !session.ValidNode(node) {
		return ""
	}
	return node
}

// open starts a session: by long-polling (answered with the open packet)
// or on a WebSocket (the open packet is its first frame).
func (s *Server) open(w http.ResponseWriter, r *http.Request, websocket bool) {
	es := newEngineSession(s, s.newSID(), r)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		errForbidden.write(w)
		return
	}
	s.sessions[es.sid] = es
	s.live.Add(1)
	s.mu.Unlock()
	if websocket {
		es.openWebSocket(w, r)
		return
	}
	es.openPolling(w)
}

func (s *Server) session(sid string) *engineSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sid]
}

// forget drops an ended session.
func (s *Server) forget(es *engineSession) {
	s.mu.Lock()
	if s.sessions[es.sid] == es {
		delete(s.sessions, es.sid)
		s.live.Done()
	}
	s.mu.Unlock()
}

// Shutdown ends every session that has not connected to the hub yet (the
// hub's own Shutdown closes the others, with 1001) and waits, until ctx
// ends, for all to be gone. New sessions are refused from the call on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var pending []*engineSession
	for _, es := range s.sessions {
		pending = append(pending, es)
	}
	s.mu.Unlock()
	for _, es := range pending {
		if es.conn() == nil {
			es.end(errShutdown)
		}
	}
	done := make(chan struct{})
	go func() { s.live.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errShutdown = errors.New("socketio: the node is shutting down")

// pollLimit is the longest a poll waits for packets: a ping comes every
// ping interval, so a poll that waits longer than that and the timeout
// has a client that is gone.
func (s *Server) pollLimit() time.Duration { return s.cfg.PingInterval + s.cfg.PingTimeout }

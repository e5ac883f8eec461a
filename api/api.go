// Package api is the server API of PROTOCOL.md §7: backends call
// <prefix>.api.<method> with a NATS request (any node answers, for the
// whole cluster), and the admin listener serves the same JSON as POST
// /api/<method>.
//
// A method that needs every node (presence, channels, subscribe,
// unsubscribe, disconnect) is asked of all of them at once on
// <prefix>.cluster.api, a subject of the nodes' own, and the answers of the
// live nodes are gathered, for at most gatherWait.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/session"
)

// Store is what the API needs of the history store (package history).
type Store interface {
	Keeps(channel string) bool
	Publish(ctx context.Context, channel string, payload []byte, id string) (uint64, error)
	Last(ctx context.Context, channel string) (uint64, error)
	Since(ctx context.Context, channel string, from, upTo uint64, limit int) ([]session.Stored, error)
	Tail(ctx context.Context, channel string, n int, upTo uint64) ([]session.Stored, error)
}

// Server answers the server API for one node.
type Server struct {
	hub    *session.Hub
	broker *broker.Broker
	store  Store // nil: no channel keeps history
	prefix string
	log    *slog.Logger
	count  func(method string, failed bool) // each request answered, for metrics; may be nil
	subs   []*nats.Subscription
	// busy holds a slot for each request being answered: a request waits
	// up to storeWait, and backends must not grow them without bound.
	busy chan struct{}
}

// maxInFlight bounds the requests a node answers at once; past it a
// request is answered busy at once.
const maxInFlight = 512

// gatherWait bounds how long a cluster-wide method waits for the nodes.
const gatherWait = 2 * time.Second

// storeWait bounds a durable publish or a history read (PROTOCOL.md §6).
const storeWait = 10 * time.Second

// New returns the API of the node of hub and b; store may be nil. count,
// if not nil, hears of every request answered: its method (as asked,
// "unknown" for none of the API's) and whether it failed.
func New(hub *session.Hub, b *broker.Broker, store Store, log *slog.Logger, count func(method string, failed bool)) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{hub: hub, broker: b, store: store, prefix: b.Subjects().Prefix, log: log, count: count,
		busy: make(chan struct{}, maxInFlight)}
}

// Start subscribes the node: to <prefix>.api.* in a queue group shared by
// every node, so that one answers each request, and to <prefix>.cluster.api
// for its part of cluster-wide methods.
func (s *Server) Start() error {
	nc := s.broker.Conn()
	sub, err := nc.QueueSubscribe(s.prefix+".api.*", "pushgrid-api", s.onRequest)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	sub, err = nc.Subscribe(s.clusterSubject(), s.onCluster)
	if err != nil {
		return err
	}
	s.subs = append(s.subs, sub)
	return nc.Flush()
}

// Stop unsubscribes.
func (s *Server) Stop() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.subs = nil
}

func (s *Server) clusterSubject() string { return s.prefix + ".cluster.api" }

// onRequest answers a backend's request. The answer goes only to a reply
// subject under _INBOX., the one backends may subscribe to: this node may
// publish anywhere, and a request must not make it publish for a backend
// where the backend itself may not.
func (s *Server) onRequest(m *nats.Msg) {
	if !strings.HasPrefix(m.Reply, "_INBOX.") {
		s.log.Warn("server API request without an _INBOX. reply subject: not answered", "subject", m.Subject, "reply", m.Reply)
		return
	}
	method := m.Subject[len(s.prefix+".api."):]
	if !s.acquire() {
		_ = m.Respond([]byte(`{"error":"busy: too many server API requests at once on this node; retry"}`))
		return
	}
	go func() {
		defer s.release()
		ctx, cancel := context.WithTimeout(context.Background(), storeWait+time.Second)
		defer cancel()
		_ = m.Respond(s.Call(ctx, method, m.Data))
	}()
}

// acquire takes a slot for a request, false when none is free.
func (s *Server) acquire() bool {
	select {
	case s.busy <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() { <-s.busy }

// Call runs method with the JSON request req and returns the JSON answer:
// the result object, or {"error":"why"}.
func (s *Server) Call(ctx context.Context, method string, req []byte) []byte {
	result, err := s.call(ctx, method, req)
	if s.count != nil {
		name := method
		if errors.Is(err, errUnknownMethod) {
			name = "unknown"
		}
		s.count(name, err != nil)
	}
	if err != nil {
		b, _ := json.Marshal(map[string]string{"error": err.Error()})
		return b
	}
	b, err := json.Marshal(result)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}

// request is every method's request; each reads its own fields.
type request struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	ID      string          `json:"id"`
	Pattern string          `json:"pattern"`
	Since   uint64          `json:"since"`
	Limit   int             `json:"limit"`
	Last    int             `json:"last"`
	User    string          `json:"user"`
	Conn    string          `json:"conn"`
	Code    int             `json:"code"`
	Reason  string          `json:"reason"`
}

var errUnknownMethod = errors.New("unknown method")

func (s *Server) call(ctx context.Context, method string, raw []byte) (any, error) {
	var req request
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("the request is not a JSON object of this method's fields: %v", err)
		}
	}
	switch method {
	case "publish":
		return s.publish(ctx, req)
	case "history":
		return s.history(ctx, req)
	case "presence":
		return s.presence(ctx, req)
	case "channels":
		return s.channels(ctx, req)
	case "subscribe", "unsubscribe":
		if !session.ValidUser(req.User) {
			return nil, fmt.Errorf("user %q is not a valid user name", req.User)
		}
		if !session.ValidChannel(req.Channel) {
			return nil, fmt.Errorf("channel %q is not a valid channel name", req.Channel)
		}
		return s.gatherSum(ctx, clusterOp{Op: method, User: req.User, Channel: req.Channel})
	case "disconnect":
		return s.disconnect(ctx, req)
	case "info":
		return s.info(), nil
	}
	return nil, fmt.Errorf("%w %q", errUnknownMethod, method)
}

func (s *Server) publish(ctx context.Context, req request) (any, error) {
	if !session.ValidChannel(req.Channel) {
		return nil, fmt.Errorf("channel %q is not a valid channel name", req.Channel)
	}
	if len(req.Data) == 0 {
		return nil, errors.New("data is required: the payload, any JSON value")
	}
	if s.store != nil && s.store.Keeps(req.Channel) {
		ctx, cancel := context.WithTimeout(ctx, storeWait)
		defer cancel()
		seq, err := s.store.Publish(ctx, req.Channel, req.Data, req.ID)
		if err != nil {
			return nil, fmt.Errorf("unavailable: not stored (%v); retry with the same id", err)
		}
		return map[string]uint64{"seq": seq}, nil
	}
	if err := s.broker.Publish(req.Channel, req.Data); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// A history answer holds at most maxHistoryMessages messages and, past
// the first, maxHistoryBytes of them: it must fit in one NATS message
// (1 MiB by default). A caller that wants more asks again with since = the
// last seq it got.
const (
	maxHistoryMessages = 1000
	maxHistoryBytes    = 512 << 10
)

// storedMessage is one message of a history answer: data is the payload
// as JSON (text that is not JSON, as a JSON string).
type storedMessage struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

func (s *Server) history(ctx context.Context, req request) (any, error) {
	if !session.ValidChannel(req.Channel) {
		return nil, fmt.Errorf("channel %q is not a valid channel name", req.Channel)
	}
	if s.store == nil || !s.store.Keeps(req.Channel) {
		return nil, fmt.Errorf("channel %q keeps no history", req.Channel)
	}
	if req.Limit < 0 || req.Last < 0 {
		return nil, errors.New("limit and last must not be negative")
	}
	if req.Last > 0 && req.Since > 0 {
		return nil, errors.New("give since or last, not both")
	}
	if req.Limit == 0 || req.Limit > maxHistoryMessages {
		req.Limit = maxHistoryMessages
	}
	ctx, cancel := context.WithTimeout(ctx, storeWait)
	defer cancel()
	last, err := s.store.Last(ctx, req.Channel)
	if err != nil {
		return nil, fmt.Errorf("unavailable: %v", err)
	}
	msgs := []storedMessage{}
	if last > req.Since {
		var stored []session.Stored
		if req.Last > 0 {
			stored, err = s.store.Tail(ctx, req.Channel, min(req.Last, req.Limit), last)
		} else {
			stored, err = s.store.Since(ctx, req.Channel, req.Since+1, last, req.Limit)
		}
		if err != nil {
			return nil, fmt.Errorf("unavailable: %v", err)
		}
		size := 0
		for _, m := range stored {
			data := json.RawMessage(m.Data)
			if !json.Valid(data) {
				data, _ = json.Marshal(string(m.Data))
			}
			if size += len(data) + 32; size > maxHistoryBytes && len(msgs) > 0 {
				break // the caller asks again, since the last seq it got
			}
			msgs = append(msgs, storedMessage{m.Seq, data})
		}
	}
	return map[string]any{"seq": last, "messages": msgs}, nil
}

// Presence is channel's members on every live node: the connections, and
// each user's count of them.
func (s *Server) Presence(ctx context.Context, channel string) (count int, users map[string]int, err error) {
	answers, err := s.gather(ctx, clusterOp{Op: "presence", Channel: channel})
	if err != nil {
		return 0, nil, err
	}
	users = map[string]int{}
	for _, a := range answers {
		count += a.Count
		for u, n := range a.Users {
			users[u] += n
		}
	}
	return count, users, nil
}

func (s *Server) presence(ctx context.Context, req request) (any, error) {
	if !session.ValidChannel(req.Channel) {
		return nil, fmt.Errorf("channel %q is not a valid channel name", req.Channel)
	}
	count, users, err := s.Presence(ctx, req.Channel)
	if err != nil {
		return nil, err
	}
	list, truncated := session.PresenceList(users)
	out := map[string]any{"count": count, "users": list}
	if truncated {
		out["truncated"] = true
	}
	return out, nil
}

func (s *Server) channels(ctx context.Context, req request) (any, error) {
	if req.Pattern != "" {
		if _, err := session.ParsePattern(req.Pattern); err != nil {
			return nil, fmt.Errorf("pattern: %v", err)
		}
	}
	answers, err := s.gather(ctx, clusterOp{Op: "channels", Pattern: req.Pattern})
	if err != nil {
		return nil, err
	}
	sums := map[string]int{}
	for _, a := range answers {
		for c, n := range a.Channels {
			sums[c] += n
		}
	}
	type entry struct {
		Channel string `json:"channel"`
		Members int    `json:"members"`
	}
	list := make([]entry, 0, len(sums))
	for c, n := range sums {
		list = append(list, entry{c, n})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Channel < list[j].Channel })
	if len(list) > MaxChannels {
		return map[string]any{"channels": list[:MaxChannels], "truncated": true}, nil
	}
	return map[string]any{"channels": list}, nil
}

// MaxChannels bounds the channels method's answer: the first 10,000 by
// name, then "truncated" (a narrower pattern finds the rest). Each node
// sends its first MaxChannels+1, which hold the cluster's first
// MaxChannels, whose members are summed in full.
const MaxChannels = 10000

func (s *Server) disconnect(ctx context.Context, req request) (any, error) {
	switch {
	case (req.User == "") == (req.Conn == ""):
		return nil, errors.New("give user or conn, one of them")
	case req.User != "" && !session.ValidUser(req.User):
		return nil, fmt.Errorf("user %q is not a valid user name", req.User)
	case req.Conn != "" && !session.ValidToken(req.Conn):
		return nil, fmt.Errorf("conn %q is not a valid connection id", req.Conn)
	case req.Code != 0 && (req.Code < 4000 || req.Code > 4999):
		return nil, fmt.Errorf("code %d is not between 4000 and 4999", req.Code)
	case len(req.Reason) > 120:
		return nil, errors.New("reason is longer than 120 bytes")
	}
	return s.gatherSum(ctx, clusterOp{Op: "disconnect", User: req.User, Conn: req.Conn, Code: req.Code, Reason: req.Reason})
}

// nodeInfo is one node in info's answer.
type nodeInfo struct {
	Node        string `json:"node"`
	Connections int    `json:"connections"`
	Channels    int    `json:"channels"`
	UptimeS     int64  `json:"uptime_s"`
}

func (s *Server) info() any {
	var nodes []nodeInfo
	for _, n := range s.broker.Nodes() {
		up := int64(0)
		if !n.Started.IsZero() {
			up = int64(time.Since(n.Started).Seconds())
		}
		nodes = append(nodes, nodeInfo{n.Name, n.Connections, n.Channels, up})
	}
	return map[string]any{"nodes": nodes}
}

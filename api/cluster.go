package api

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/session"
)

// clusterOp is what one node is asked for its part of a cluster-wide
// method.
type clusterOp struct {
	Op      string `json:"op"`
	Channel string `json:"channel,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	User    string `json:"user,omitempty"`
	Conn    string `json:"conn,omitempty"`
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// nodeAnswer is one node's part.
type nodeAnswer struct {
	Node     string         `json:"node"`
	Count    int            `json:"count,omitempty"`
	Users    map[string]int `json:"users,omitempty"`
	Channels map[string]int `json:"channels,omitempty"`
	Conns    int            `json:"conns,omitempty"`
}

// onCluster answers this node's part of a cluster-wide method.
func (s *Server) onCluster(m *nats.Msg) {
	var op clusterOp
	if err := json.Unmarshal(m.Data, &op); err != nil || m.Reply == "" {
		return
	}
	a := nodeAnswer{Node: s.hub.Config().Node}
	switch op.Op {
	case "presence":
		a.Count, a.Users = s.hub.Presence(op.Channel)
		a.Users = firstUsers(a.Users, session.MaxPresenceUsers+1)
	case "channels":
		var match func(string) bool
		if op.Pattern != "" {
			p, err := session.ParsePattern(op.Pattern)
			if err != nil {
				return
			}
			match = p.Match
		}
		a.Channels = firstUsers(s.hub.Channels(match), MaxChannels+1)
	case "subscribe":
		a.Conns = s.hub.Subscribe(op.User, op.Channel)
	case "unsubscribe":
		a.Conns = s.hub.Unsubscribe(op.User, op.Channel)
	case "disconnect":
		d := session.Disconnect{Code: session.CloseDisconnected, Reason: "disconnected"}
		if op.Code != 0 {
			d.Code = session.CloseCode(op.Code)
		}
		if op.Reason != "" {
			d.Reason = op.Reason
		}
		a.Conns = s.hub.Disconnect(op.User, op.Conn, d)
	default:
		return
	}
	b, _ := json.Marshal(a)
	if err := m.Respond(b); err != nil {
		s.log.Warn("a cluster-wide answer was not sent", "op", op.Op, "bytes", len(b), "err", err)
	}
}

// firstUsers is the first n of users (or channels) by name, all if fewer:
// an answer must fit in a NATS message, and the cluster's first 1,000
// users by name are among each node's first 1,000 (a user's connections
// counted in full); one more tells the result is truncated.
func firstUsers(users map[string]int, n int) map[string]int {
	if len(users) <= n {
		return users
	}
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	out := make(map[string]int, n)
	for _, u := range names[:n] {
		out[u] = users[u]
	}
	return out
}

// gather asks every node for its part of op and returns the answers of
// the live nodes that came within gatherWait.
func (s *Server) gather(ctx context.Context, op clusterOp) ([]nodeAnswer, error) {
	want := len(s.broker.Nodes())
	nc := s.broker.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(op)
	if err := nc.PublishRequest(s.clusterSubject(), inbox, req); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, gatherWait)
	defer cancel()
	seen := map[string]bool{}
	var answers []nodeAnswer
	for len(seen) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the nodes that answered are what there is
		}
		var a nodeAnswer
		if json.Unmarshal(m.Data, &a) != nil || seen[a.Node] {
			continue
		}
		seen[a.Node] = true
		answers = append(answers, a)
	}
	return answers, nil
}

// gatherSum is the conns of every node's answer to op, summed.
func (s *Server) gatherSum(ctx context.Context, op clusterOp) (any, error) {
	answers, err := s.gather(ctx, op)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, a := range answers {
		total += a.Conns
	}
	return map[string]int{"conns": total}, nil
}

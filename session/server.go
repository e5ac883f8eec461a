package session

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

// What the server API (PROTOCOL.md §7) asks of each node's hub: its part
// of a channel's presence and of the channel list, and joins, leaves and
// disconnects of its own connections on a backend's say.

// Presence is channel's members on this node: how many connections, and
// each user's count of them.
func (h *Hub) Presence(channel string) (count int, users map[string]int) {
	h.mu.RLock()
	ch := h.channels[channel]
	h.mu.RUnlock()
	users = make(map[string]int)
	if ch == nil {
		return 0, users
	}
	ch.mu.RLock()
	defer ch.mu.RUnlock()
	for _, c := range ch.members {
		users[c.User()]++
	}
	return len(ch.members), users
}

// Channels returns each channel of this node that match accepts (nil: all)
// with its local member count.
func (h *Hub) Channels(match func(channel string) bool) map[string]int {
	h.mu.RLock()
	chans := make([]*channel, 0, len(h.channels))
	for name, ch := range h.channels {
		if match == nil || match(name) {
			chans = append(chans, ch)
		}
	}
	h.mu.RUnlock()
	out := make(map[string]int, len(chans))
	for _, ch := range chans {
		if n := ch.size(); n > 0 {
			out[ch.name] = n
		}
	}
	return out
}

// serverOp is a join or leave a backend ordered for a connection: it waits
// in the connection's inbox with its frames, so that the connection's
// channels change in the order things happened to it.
type serverOp struct {
	join    bool
	channel string
}

func (serverOp) Bytes() []byte { return nil }
func (serverOp) Close() error  { return nil }

// Subscribe makes every connection of user on this node join channel,
// whatever the channel's rules, with the usual answer and control frames;
// it returns how many connections it asked, without waiting for them.
// Unsubscribe makes them leave.
func (h *Hub) Subscribe(user, channel string) int { return h.serverOps(user, serverOp{true, channel}) }
func (h *Hub) Unsubscribe(user, channel string) int {
	return h.serverOps(user, serverOp{false, channel})
}

func (h *Hub) serverOps(user string, op serverOp) int {
	if !ValidChannel(op.channel) {
		return 0
	}
	n := 0
	for _, c := range h.userConns(user) {
		if h.enqueueServer(c, op) {
			n++
		}
	}
	return n
}

// userConns are user's connections on this node.
func (h *Hub) userConns(user string) []*Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	conns := append([]*Conn(nil), h.users[user]...)
	if anon := h.anonymous(user); anon != nil {
		conns = append(conns, anon)
	}
	return conns
}

// serve runs a server op on c's worker.
func (h *Hub) serve(c *Conn, op serverOp) {
	f := &Frame{Type: TypeLeave, Channel: op.channel}
	if op.join {
		f.Type = TypeJoin
		h.joinAs(c, f, true)
		return
	}
	h.leave(c, f)
}

// Disconnect closes, with d, every connection of user on this node, or
// the connection conn when user is empty; it returns how many.
func (h *Hub) Disconnect(user, conn string, d Disconnect) int {
	var conns []*Conn
	if user != "" {
		conns = h.userConns(user)
	} else {
		h.mu.RLock()
		if c := h.conns[conn]; c != nil {
			conns = append(conns, c)
		}
		h.mu.RUnlock()
	}
	for _, c := range conns {
		c.Close(d)
	}
	return len(conns)
}

// UserCount is one user's connections in a presence answer.
type UserCount struct {
	User  string `json:"user"`
	Conns int    `json:"conns"`
}

// MaxPresenceUsers bounds the users a presence answer lists
// (PROTOCOL.md §7); past it the answer says truncated.
const MaxPresenceUsers = 1000

// PresenceList sorts users by name and cuts the list at
// MaxPresenceUsers; truncated says whether it cut.
func PresenceList(users map[string]int) (list []UserCount, truncated bool) {
	list = make([]UserCount, 0, len(users))
	for u, n := range users {
		list = append(list, UserCount{u, n})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].User < list[j].User })
	if len(list) > MaxPresenceUsers {
		return list[:MaxPresenceUsers], true
	}
	return list, false
}

// presenceWait bounds a client's presence request.
const presenceWait = 3 * time.Second

// presence answers a client's presence frame: the channel's members across
// the cluster, for a client that may join it, when its rule allows
// presence.
func (h *Hub) presence(c *Conn, f *Frame) {
	name, ok := h.channelOf(c, f)
	if !ok {
		return
	}
	rule := h.ruleFor(name)
	if perr := h.mayJoin(c, name, rule); perr != nil {
		h.sendError(c, perr, f.ID)
		return
	}
	if !rule.Presence {
		h.sendError(c, errorf(CodeForbidden, "presence is off in channel %q", name), f.ID)
		return
	}
	var count int
	var users map[string]int
	if h.cfg.Presence != nil {
		ctx, cancel := context.WithTimeout(context.Background(), presenceWait)
		var err error
		count, users, err = h.cfg.Presence(ctx, name)
		cancel()
		if err != nil {
			h.sendError(c, errorf(CodeUnavailable, "presence of %q cannot be read now; retry later", name), f.ID)
			return
		}
	} else {
		count, users = h.Presence(name)
	}
	list, truncated := PresenceList(users)
	b := encodeAnswer("presence", name, nil)
	b = strconv.AppendInt(appendField(b[:len(b)-1], "count"), int64(count), 10)
	listed, _ := json.Marshal(list)
	b = append(appendField(b, "users"), listed...)
	if truncated {
		b = append(appendField(b, "truncated"), "true"...)
	}
	b = appendID(b, f.ID)
	c.out.send(textFrame(append(b, '}')), 1)
	h.stats.presence.Add(1)
}

// DepartDead does, for conn of node, a node that died, what its node
// would have done had it closed the connection: the channels' remaining
// members are told it left (where the rules announce), and backends get
// its leave and disconnect events.
func (h *Hub) DepartDead(node, conn string, m Member) {
	at := time.Now().UTC().Format(time.RFC3339Nano)
	payload := func(key, value string) []byte {
		b := append(make([]byte, 0, 160), `{"conn":`...)
		b = jsonstr.Append(b, conn)
		b = jsonstr.Append(appendField(b, "user"), m.User)
		b = jsonstr.Append(appendField(b, "node"), node)
		b = jsonstr.Append(appendField(b, key), value)
		b = jsonstr.Append(appendField(b, "at"), at)
		return append(b, '}')
	}
	for _, name := range m.Channels {
		if !ValidChannel(name) {
			continue
		}
		if h.ruleFor(name).Announce {
			h.publish(name, encodeControl(name, m.User, "left"))
		}
		if event := "leave." + name; h.backend.Listening(event) {
			_ = h.backend.PublishEvent(event, payload("channel", name))
		}
	}
	if h.backend.Listening("disconnect") {
		_ = h.backend.PublishEvent("disconnect", payload("remote", m.Remote))
	}
}

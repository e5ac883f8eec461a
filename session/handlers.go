package session

import (
	"context"
	"errors"
	"strings"
)

// Receive handles one text frame from c at once, on the caller's
// goroutine; frames of one connection must come one at a time, in arrival
// order (Enqueue does that for a read loop).
func (h *Hub) Receive(c *Conn, data []byte) {
	h.stats.received.Add(1)
	if c.out.isClosed() {
		return // the server closed c (say, for its rate): it is not heard any more
	}
	f, perr := DecodeFrame(data)
	if ok, cut := h.admit(c); !ok {
		h.sendError(c, errorf(CodeRateLimited, "more than %v frames per second; frame dropped", h.cfg.Rate), f.ID)
		if cut {
			c.Close(DisconnectRateLimit)
		}
		return
	}
	if perr != nil {
		h.sendError(c, perr, f.ID)
		return
	}
	if err := h.handler.OnMessage(c, &f); err != nil {
		var pe *Error
		switch {
		case errors.Is(err, ErrHandled):
		case errors.As(err, &pe):
			h.sendError(c, pe, f.ID)
		default:
			h.log.Error("handler refused a frame", logConn, c.id, logErr, err)
			h.sendError(c, errorf(CodeBadRequest, "%v", err), f.ID)
		}
		return
	}
	switch f.Type {
	case TypeJoin:
		h.join(c, &f)
	case TypeChat:
		h.chat(c, &f)
	case TypeLeave:
		h.leave(c, &f)
	case TypeRefresh:
		h.refresh(c, &f)
	case TypePresence:
		h.presence(c, &f)
	case TypePing:
		if f.ID == nil {
			c.out.send(framePong, 1) // shared: the outbox only reads it
		} else {
			c.out.send(textFrame(encodePong(f.ID)), 1)
		}
	default:
		h.custom(c, &f)
	}
}

// Binary answers a binary frame from c with close 1003, once the frames
// that came before it are handled.
func (h *Hub) Binary(c *Conn) { h.Enqueue(c, binaryFrame{}) }

// Ping answers a WebSocket ping from c with a pong, in order with the
// frames that came before it. The hub keeps payload.
func (h *Hub) Ping(c *Conn, payload []byte) { h.Enqueue(c, pingFrame{payload}) }

// Pong counts a WebSocket pong from c against its rate, in order with the
// frames that came before it.
func (h *Hub) Pong(c *Conn) { h.Enqueue(c, pongFrame{}) }

// receivePong charges a client's pong, which needs no answer.
func (h *Hub) receivePong(c *Conn) {
	if c.out.isClosed() {
		return
	}
	if ok, cut := h.admit(c); !ok && cut {
		c.Close(DisconnectRateLimit)
	}
}

// receivePing answers a WebSocket ping. A ping takes a token like any
// frame: a client that floods pings gets no pong past its rate, and is
// closed with 1008 like any other flood.
func (h *Hub) receivePing(c *Conn, payload []byte) {
	if c.out.isClosed() {
		return
	}
	if ok, cut := h.admit(c); !ok {
		if cut {
			c.Close(DisconnectRateLimit)
		}
		return
	}
	c.out.send(appendFrame(make([]byte, 0, 2+len(payload)), opPong, payload), 1)
}

// admit charges one frame of c to its rate bucket. Past the rate, the
// frame is to be dropped (ok false); cut says c has been over the rate
// rateStrikes frames in a row and is to be closed with 1008.
func (h *Hub) admit(c *Conn) (ok, cut bool) {
	c.mu.Lock()
	b := c.bucket
	c.mu.Unlock()
	if b.take(h.now(), h.cfg.Rate, h.cfg.Burst) {
		c.strikes = 0
		return true, false
	}
	c.strikes++
	return false, c.strikes >= rateStrikes
}

func (h *Hub) sendError(c *Conn, e *Error, id []byte) {
	h.stats.countError(e.Code)
	c.out.send(textFrame(encodeError(e, id)), 1)
}

// join makes c a member of f.Channel and answers joined; it reports whether
// c is a member afterwards.
func (h *Hub) join(c *Conn, f *Frame) bool { return h.joinAs(c, f, false) }

// joinAs joins c to f's channel; byServer (the server API's subscribe)
// skips the channel's rules.
func (h *Hub) joinAs(c *Conn, f *Frame, byServer bool) bool {
	name, ok := h.channelOf(c, f)
	if !ok {
		return false
	}
	// A verified user (a token's, a hook's) is not the client's to
	// choose: a join's user field is ignored then.
	if f.User != "" && !c.verified {
		if perr := h.claimUser(c, f.User); perr != nil {
			h.sendError(c, perr, f.ID)
			return false
		}
	}
	user := c.User()
	rule := h.ruleFor(name)
	if perr := h.mayJoin(c, name, rule); perr != nil && !byServer {
		h.sendError(c, perr, f.ID)
		return false
	}
	c.mu.Lock()
	member := c.channel(name) != nil
	full := len(c.channels) >= h.cfg.MaxChannels
	gone := c.gone
	c.mu.Unlock()
	if member {
		h.rejoin(c, name, rule, f)
		return true
	}
	if gone {
		return false
	}
	if full {
		h.sendError(c, errorf(CodeTooManyChannels, "at most %d channels per connection", h.cfg.MaxChannels), f.ID)
		return false
	}

	stored := rule.History > 0 && h.store != nil
	ch := h.addMember(c, name, rule, stored)
	if err := h.bus.Subscribe(name); err != nil {
		h.removeMember(c, ch)
		h.log.Error("subscribe failed", logChannel, name, logErr, err)
		h.sendError(c, errorf(CodeBadRequest, "cannot join %q now: %v", name, err), f.ID)
		return false
	}
	if stored {
		// Answered, with the replay, once the store has (history.go).
		if perr := h.joinStored(c, ch, f); perr != nil {
			h.removeMember(c, ch)
			h.bus.Unsubscribe(name)
			h.sendError(c, perr, f.ID)
			return false
		}
	}
	c.mu.Lock()
	c.channels = append(c.channels, ch)
	c.mu.Unlock()
	h.roster.touch(c.id)

	switch {
	case stored: // answered with the replay
	case f.Recover != RecoverNone:
		// since or history on a channel that keeps none (PROTOCOL.md §6).
		c.out.send(textFrame(encodeJoinedRecovered(name, f.ID)), 1)
	default:
		c.out.send(textFrame(encodeAnswer("joined", name, f.ID)), 1)
	}
	if rule.Announce {
		h.publish(name, encodeControl(name, user, "joined"))
	}
	h.event(c, "join."+name, "channel", name)
	return true
}

// rejoin answers a join of c to a channel it is a member of: joined, and
// on a history channel as a first join would (PROTOCOL.md §6), with seq
// and the replay since or history ask for, live messages held back
// meanwhile; on error c stays a member.
func (h *Hub) rejoin(c *Conn, name string, rule *Rule, f *Frame) {
	h.mu.RLock()
	ch := h.channels[name]
	h.mu.RUnlock()
	if rule.History == 0 || h.store == nil || ch == nil || !ch.hold(c) {
		if f.Recover != RecoverNone {
			c.out.send(textFrame(encodeJoinedRecovered(name, f.ID)), 1)
			return
		}
		c.out.send(textFrame(encodeAnswer("joined", name, f.ID)), 1)
		return
	}
	if perr := h.joinStored(c, ch, f); perr != nil {
		ch.giveBack(c) // what it missed meanwhile
		h.sendError(c, perr, f.ID)
	}
}

// claimUser sets c's user from a join's user field: allowed once, while the
// connection has no user of its own; naming the same user again is fine.
func (h *Hub) claimUser(c *Conn, user string) *Error {
	if !ValidUser(user) {
		return errorf(CodeBadRequest, "invalid user name %q", user)
	}
	if !ClaimableUser(user) {
		return errorf(CodeBadRequest, "user names starting with %q are the server's", anonPrefix)
	}
	h.mu.Lock()
	c.mu.Lock()
	old, set := c.user, c.userSet
	var ipKey bucketKey
	var ipBucket *bucket
	if !set {
		ipKey, ipBucket = c.limitKey(), c.bucket
		c.user, c.userSet = user, true
		// From now on the connection counts against its user's bucket.
		c.bucket = h.limits.acquire(c.limitKey(), h.now())
	}
	c.mu.Unlock()
	if !set {
		h.indexUser(c, user)
	}
	h.mu.Unlock()
	if ipBucket != nil {
		h.limits.release(ipKey, ipBucket, h.now())
		h.roster.touch(c.id) // its user changed
	}
	if set && old != user {
		return errorf(CodeBadRequest, "this connection is already user %q", old)
	}
	return nil
}

// channelOf returns the channel f names, or answers bad_channel and
// reports false when the name is not valid.
func (h *Hub) channelOf(c *Conn, f *Frame) (string, bool) {
	if !ValidChannel(f.Channel) {
		h.sendError(c, errorf(CodeBadChannel, "invalid channel name %q", f.Channel), f.ID)
		return "", false
	}
	return f.Channel, true
}

// privateAllows applies the private-channel rule of Config.PrivatePrefix:
// a channel <prefix><user> or <prefix><user>.<more> is user's alone.
func (h *Hub) privateAllows(user, channel string) bool {
	p := h.cfg.PrivatePrefix
	if p == "none" || !strings.HasPrefix(channel, p) {
		return true
	}
	owner, _, _ := strings.Cut(channel[len(p):], ".")
	return owner == user
}

func (h *Hub) chat(c *Conn, f *Frame) {
	name, ok := h.channelOf(c, f)
	if !ok {
		return
	}
	c.mu.Lock()
	ch := c.channel(name)
	c.mu.Unlock()
	rule := h.ruleFor(name)
	if ch != nil {
		rule = ch.rule
	}
	if rule.Chat == ChatNobody {
		h.sendError(c, errorf(CodeForbidden, "only the server publishes to channel %q", name), f.ID)
		return
	}
	if ch == nil {
		// Implicit join, so a client that reconnected keeps chatting.
		join := Frame{Type: TypeJoin, Channel: name, ID: f.ID}
		if !h.join(c, &join) {
			return
		}
	}
	payload := encodeChat(name, c.User(), f.Msg)
	if h.store != nil && h.ruleFor(name).History > 0 {
		h.publishDurably(c, name, payload)
		return
	}
	h.publish(name, payload)
}

func (h *Hub) leave(c *Conn, f *Frame) {
	name, ok := h.channelOf(c, f)
	if !ok {
		return
	}
	c.mu.Lock()
	ch := c.channel(name)
	if ch != nil {
		c.dropChannel(ch)
	}
	c.mu.Unlock()
	if ch != nil {
		h.roster.touch(c.id)
		h.part(c, ch)
	}
	c.out.send(textFrame(encodeAnswer("left", name, f.ID)), 1)
}

// part ends c's membership of ch and tells the remaining members.
func (h *Hub) part(c *Conn, ch *channel) {
	h.removeMember(c, ch)
	h.bus.Unsubscribe(ch.name)
	if ch.rule.Announce {
		h.publish(ch.name, encodeControl(ch.name, c.User(), "left"))
	}
	h.event(c, "leave."+ch.name, "channel", ch.name)
}

// refresh replaces c's token: the new one must be valid and name the same
// user; its exp (or none) replaces the old, and its channels claim the
// old's. Anything else is bad_token, and c keeps its old token.
func (h *Hub) refresh(c *Conn, f *Frame) {
	if h.cfg.Refresh == nil || !c.verified {
		h.sendError(c, errorf(CodeBadToken, "this node takes no refresh: reconnect with a new token"), f.ID)
		return
	}
	id, err := h.cfg.Refresh(f.Token)
	if err != nil {
		h.sendError(c, errorf(CodeBadToken, "%v", err), f.ID)
		return
	}
	c.mu.Lock()
	same := id.User == c.user
	if same {
		c.claims = id.Channels
		c.expireAt(id.Expires, h.cfg.Leeway)
	}
	c.mu.Unlock()
	if !same {
		h.sendError(c, errorf(CodeBadToken, "the token is for another user"), f.ID)
		return
	}
	var exp int64
	if !id.Expires.IsZero() {
		exp = id.Expires.Unix()
	}
	c.out.send(textFrame(encodeRefreshed(exp, f.ID)), 1)
}

func (h *Hub) custom(c *Conn, f *Frame) {
	if !ValidToken(f.Type) {
		h.sendError(c, errorf(CodeBadRequest, "invalid type %q", f.Type), f.ID)
		return
	}
	payload := append([]byte(nil), f.Raw...)
	user := c.User()
	if f.ID == nil {
		if _, err := h.backend.Send(context.Background(), f.Type, user, c.id, payload, false); err != nil {
			h.log.Error("publish custom frame failed", logConn, c.id, logErr, err)
		}
		return
	}
	connCtx, ok := c.startRequest(h.cfg.MaxRequests)
	if !ok {
		h.sendError(c, errorf(CodeTooManyRequests, "at most %d requests may wait for a reply", h.cfg.MaxRequests), f.ID)
		return
	}
	if connCtx == nil {
		return // disconnected
	}
	id := append([]byte(nil), f.ID...)
	typ := f.Type
	h.requests.Add(1)
	go func() {
		defer h.requests.Add(-1)
		defer c.endRequest()
		ctx, cancel := context.WithTimeout(connCtx, h.cfg.RequestTimeout)
		defer cancel()
		reply, err := h.backend.Send(ctx, typ, user, c.id, payload, true)
		switch {
		case connCtx.Err() != nil:
			// The connection is gone: nobody is left to answer.
		case err == nil:
			c.out.send(textFrame(encodeReply(id, reply)), 1)
		case errors.Is(err, ErrNoHandler):
			h.sendError(c, errorf(CodeNoHandler, "no backend handles %q", typ), id)
		case isTimeout(err):
			h.sendError(c, errorf(CodeTimeout, "no reply to %q within %v", typ, h.cfg.RequestTimeout), id)
		default:
			h.log.Error("request failed", logConn, c.id, logErr, err)
			h.sendError(c, errorf(CodeTimeout, "no reply to %q: %v", typ, err), id)
		}
	}()
}

// startRequest counts one more request of c waiting for a reply and
// returns the context that ends when c disconnects; ok is false when c
// has max requests waiting already, ctx nil when c is gone.
func (c *Conn) startRequest(max int) (ctx context.Context, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return nil, true
	}
	if c.requests == nil {
		ctx, cancel := context.WithCancel(context.Background())
		c.requests = &requests{ctx: ctx, cancel: cancel}
	}
	if c.requests.pending >= max {
		return nil, false
	}
	c.requests.pending++
	return c.requests.ctx, true
}

// endRequest counts a request of c as answered.
func (c *Conn) endRequest() {
	c.mu.Lock()
	c.requests.pending--
	c.mu.Unlock()
}

func (h *Hub) publish(channel string, payload []byte) {
	if err := h.bus.Publish(channel, payload); err != nil {
		h.log.Error("publish failed", logChannel, channel, logErr, err)
	}
}

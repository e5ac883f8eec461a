package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nuid"
)

// Hub is this node's side of every client connection: identities, channel
// memberships, the protocol's rules, and local delivery of what the bus
// brings in.
type Hub struct {
	cfg     Config
	bus     Bus
	backend Backend
	handler Handler
	log     *slog.Logger

	mu       sync.RWMutex
	channels map[string]*channel // guarded by mu
	users    map[string][]*Conn  // guarded by mu
	conns    map[string]*Conn    // guarded by mu
	draining bool                // guarded by mu

	epoch  time.Time // rate limiting measures time from here
	limits *limiter

	requests sync.WaitGroup // custom frames waiting for a backend's reply
	stats    counters

	pool      chan *Conn // idle pool workers wait here for a connection with frames
	poolOnce  sync.Once
	workers   sync.WaitGroup
	closed    chan struct{} // closed by Close: pool workers exit
	closeOnce sync.Once
}

// Log attribute keys.
const (
	logConn    = "conn"
	logUser    = "user"
	logChannel = "channel"
	logErr     = "err"
)

// New returns a hub that uses bus for channels and backend for events and
// custom frames. handler may be nil.
func New(cfg Config, bus Bus, backend Backend, handler Handler) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if handler == nil {
		handler = NopHandler{}
	}
	return &Hub{
		cfg:      cfg,
		bus:      bus,
		backend:  backend,
		handler:  handler,
		log:      cfg.Logger,
		channels: make(map[string]*channel),
		users:    make(map[string][]*Conn),
		epoch:    time.Now(),
		limits:   newLimiter(cfg.Rate, cfg.Burst),
		pool:     make(chan *Conn),
		closed:   make(chan struct{}),
		conns:    make(map[string]*Conn),
	}, nil
}

// Config returns the hub's configuration with defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Connect registers a new connection whose transport is t. user is the
// identity the gateway established ("" for none yet) and remote the client
// address. The welcome frame is the connection's first frame.
func (h *Hub) Connect(t Transport, user string, remote netip.Addr) (*Conn, error) {
	if user != "" && !ClaimableUser(user) {
		return nil, fmt.Errorf("user %q: %w", user, errBadUser)
	}
	c := &Conn{hub: h, id: nuid.Next(), remote: remote, user: user, userSet: user != ""}
	if user == "" {
		c.user = anonPrefix + c.id
	}
	c.out = outbox{t: t, c: c}
	c.bucket = h.limits.acquire(c.limitKey(), h.now())

	// The welcome goes out before the connection can be found, so nothing
	// published to its user or id can overtake it; it is written outside
	// the hub's lock, which every connect and delivery shares.
	c.out.send(textFrame(encodeWelcome(c.id, h.cfg.Node, c.user)), 1)
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock()
		c.Close(DisconnectGoingAway)
		h.limits.release(c.limitKey(), c.bucket, h.now())
		return nil, ErrDraining
	}
	h.conns[c.id] = c
	if c.userSet {
		h.indexUser(c, c.user)
	}
	h.mu.Unlock()

	h.remoteEvent(c, "connect")
	if err := h.handler.OnConnect(c); err != nil {
		var d Disconnect
		if !errors.As(err, &d) {
			d = Disconnect{ClosePolicy, err.Error()}
		}
		c.Close(d)
	}
	return c, nil
}

var errBadUser = errors.New("not a valid user name, or one a client may not claim")

// anonPrefix starts the user name of a connection that has none. Only the
// server gives such names: a client that could claim anon-<conn> would
// receive what is published to that connection's user.
const anonPrefix = "anon-"

// ClaimableUser reports whether a client may be user s: a valid user name
// (§3) that does not start with anon-.
func ClaimableUser(s string) bool { return ValidUser(s) && !strings.HasPrefix(s, anonPrefix) }

// now is the time since the hub's epoch, the clock of rate limiting.
func (h *Hub) now() time.Duration { return time.Since(h.epoch) }

// closedByServer accounts for a connection the outbox closed on its own.
func (h *Hub) closedByServer(c *Conn, d Disconnect) {
	if d.Code == CloseSlowConsumer {
		h.stats.slowConsumers.Add(1)
		h.log.Info("slow consumer closed", logConn, c.id)
	}
}

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
func (h *Hub) join(c *Conn, f *Frame) bool {
	name := f.Channel
	if !ValidChannel(name) {
		h.sendError(c, errorf(CodeBadChannel, "invalid channel name %q", name), f.ID)
		return false
	}
	if f.User != "" {
		if perr := h.claimUser(c, f.User); perr != nil {
			h.sendError(c, perr, f.ID)
			return false
		}
	}
	user := c.User()
	if !h.mayJoin(user, name) {
		h.sendError(c, errorf(CodeForbidden, "channel %q is private", name), f.ID)
		return false
	}
	c.mu.Lock()
	member := c.channel(name) != nil
	full := len(c.channels) >= h.cfg.MaxChannels
	gone := c.gone
	c.mu.Unlock()
	if member {
		c.out.send(textFrame(encodeAnswer("joined", name, f.ID)), 1)
		return true
	}
	if gone {
		return false
	}
	if full {
		h.sendError(c, errorf(CodeTooManyChannels, "at most %d channels per connection", h.cfg.MaxChannels), f.ID)
		return false
	}

	ch := h.addMember(c, name)
	if err := h.bus.Subscribe(name); err != nil {
		h.removeMember(c, ch)
		h.log.Error("subscribe failed", logChannel, name, logErr, err)
		h.sendError(c, errorf(CodeBadRequest, "cannot join %q now: %v", name, err), f.ID)
		return false
	}
	c.mu.Lock()
	c.channels = append(c.channels, ch)
	c.mu.Unlock()

	c.out.send(textFrame(encodeAnswer("joined", name, f.ID)), 1)
	h.publish(name, encodeControl(name, user, "joined"))
	h.event(c, "join."+name, "channel", name)
	return true
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
	}
	if set && old != user {
		return errorf(CodeBadRequest, "this connection is already user %q", old)
	}
	return nil
}

// mayJoin applies the private-channel rule of Config.PrivatePrefix.
func (h *Hub) mayJoin(user, channel string) bool {
	p := h.cfg.PrivatePrefix
	if p == "none" || !strings.HasPrefix(channel, p) {
		return true
	}
	owner, _, _ := strings.Cut(channel[len(p):], ".")
	return owner == user
}

func (h *Hub) chat(c *Conn, f *Frame) {
	name := f.Channel
	if !ValidChannel(name) {
		h.sendError(c, errorf(CodeBadChannel, "invalid channel name %q", name), f.ID)
		return
	}
	c.mu.Lock()
	member := c.channel(name) != nil
	c.mu.Unlock()
	if !member {
		// Implicit join, so a client that reconnected keeps chatting.
		join := Frame{Type: TypeJoin, Channel: name, ID: f.ID}
		if !h.join(c, &join) {
			return
		}
	}
	h.publish(name, encodeChat(name, c.User(), f.Msg))
}

func (h *Hub) leave(c *Conn, f *Frame) {
	name := f.Channel
	if !ValidChannel(name) {
		h.sendError(c, errorf(CodeBadChannel, "invalid channel name %q", name), f.ID)
		return
	}
	c.mu.Lock()
	ch := c.channel(name)
	if ch != nil {
		c.dropChannel(ch)
	}
	c.mu.Unlock()
	if ch != nil {
		h.part(c, ch)
	}
	c.out.send(textFrame(encodeAnswer("left", name, f.ID)), 1)
}

// part ends c's membership of ch and tells the remaining members.
func (h *Hub) part(c *Conn, ch *channel) {
	h.removeMember(c, ch)
	h.bus.Unsubscribe(ch.name)
	h.publish(ch.name, encodeControl(ch.name, c.User(), "left"))
	h.event(c, "leave."+ch.name, "channel", ch.name)
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
		defer h.requests.Done()
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

// Disconnect ends c after its socket closed: it leaves every channel (the
// remaining members are told), is forgotten, and the handler is told. It is
// safe to call more than once.
func (h *Hub) Disconnect(c *Conn, reason error) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	chans := c.channels
	c.channels = nil
	if c.requests != nil {
		c.requests.cancel()
	}
	c.mu.Unlock()
	c.out.abandon()

	for _, ch := range chans {
		h.part(c, ch)
	}
	c.mu.Lock()
	user, named := c.user, c.userSet
	key, b := c.limitKey(), c.bucket
	c.mu.Unlock()
	h.limits.release(key, b, h.now())
	h.mu.Lock()
	delete(h.conns, c.id)
	if named {
		h.unindexUser(c, user)
	}
	h.mu.Unlock()
	h.remoteEvent(c, "disconnect")
	h.handler.OnDisconnect(c, reason)
}

func (h *Hub) addMember(c *Conn, name string) *channel {
	for {
		h.mu.RLock()
		ch := h.channels[name]
		h.mu.RUnlock()
		if ch == nil {
			h.mu.Lock()
			if ch = h.channels[name]; ch == nil {
				ch = newChannel(name)
				h.channels[name] = ch
			}
			h.mu.Unlock()
		}
		if ch.add(c) {
			return ch
		}
		// It emptied and died between the lookup and add; its removal from
		// the map is under way.
	}
}

func (h *Hub) removeMember(c *Conn, ch *channel) {
	if !ch.remove(c) {
		return
	}
	h.mu.Lock()
	if h.channels[ch.name] == ch {
		delete(h.channels, ch.name)
	}
	h.mu.Unlock()
}

// indexUser and unindexUser keep the index of named users; callers hold
// h.mu. A user has few connections, so a slice beats a set. Anonymous
// users (anon-<conn>) are not indexed: their name holds their conn id.
func (h *Hub) indexUser(c *Conn, user string) {
	h.users[user] = append(h.users[user], c)
}

func (h *Hub) unindexUser(c *Conn, user string) {
	conns := h.users[user]
	for i, x := range conns {
		if x == c {
			last := len(conns) - 1
			conns[i] = conns[last]
			conns[last] = nil
			conns = conns[:last]
			break
		}
	}
	if len(conns) == 0 {
		delete(h.users, user)
	} else {
		h.users[user] = conns
	}
}

func (h *Hub) publish(channel string, payload []byte) {
	if err := h.bus.Publish(channel, payload); err != nil {
		h.log.Error("publish failed", logChannel, channel, logErr, err)
	}
}

// event publishes c's event name with one extra field, unless no backend
// listens: then the payload is not even built.
func (h *Hub) event(c *Conn, name, key, value string) {
	if h.backend.Listening(name) {
		h.publishEvent(c, name, key, value)
	}
}

// remoteEvent is event with the client's address, formatted only when
// someone listens.
func (h *Hub) remoteEvent(c *Conn, name string) {
	if h.backend.Listening(name) {
		h.publishEvent(c, name, "remote", c.remoteString())
	}
}

func (h *Hub) publishEvent(c *Conn, name, key, value string) {
	if err := h.backend.PublishEvent(name, c.eventPayload(key, value)); err != nil {
		h.log.Error("event failed", "event", name, logErr, err)
	}
}

// remoteString is the client address for events, "" when unknown.
func (c *Conn) remoteString() string {
	if !c.remote.IsValid() {
		return ""
	}
	return c.remote.String()
}

// eventPayload builds {"conn","user","node",<key>,"at"}.
func (c *Conn) eventPayload(key, value string) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"conn":`...)
	b = appendString(b, c.id)
	b = appendString(appendField(b, "user"), c.User())
	b = appendString(appendField(b, "node"), c.hub.cfg.Node)
	b = appendString(appendField(b, key), value)
	b = appendString(appendField(b, "at"), time.Now().UTC().Format(time.RFC3339Nano))
	return append(b, '}')
}

// DeliverChannel hands payload, published to channel, to its local members.
// The hub keeps payload; the caller must not change it.
func (h *Hub) DeliverChannel(channel string, payload []byte) {
	h.mu.RLock()
	ch := h.channels[channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	if h.cfg.PresenceLimit > 0 && bytes.HasPrefix(payload, controlPrefix) && ch.size() > h.cfg.PresenceLimit {
		return
	}
	ch.deliver(h, payload)
}

// controlPrefix starts every control frame encodeControl builds.
var controlPrefix = []byte(`{"type":"control"`)

// DeliverUser hands payload to every local connection of user.
func (h *Hub) DeliverUser(user string, payload []byte) {
	frame := textFrame(payload)
	n := 0
	h.mu.RLock()
	for _, c := range h.users[user] {
		if c.out.send(frame, 1) {
			n++
		}
	}
	anon := h.anonymous(user)
	h.mu.RUnlock()
	if anon != nil && anon.out.send(frame, 1) {
		n++
	}
	h.stats.delivered.Add(uint64(n))
}

// anonymous returns the unnamed connection whose user is name
// (anon-<conn>), or nil; callers hold h.mu.
func (h *Hub) anonymous(name string) *Conn {
	id, ok := strings.CutPrefix(name, anonPrefix)
	if !ok {
		return nil
	}
	c := h.conns[id]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userSet {
		return nil
	}
	return c
}

// DeliverConn hands payload to the local connection with that id, if any.
func (h *Hub) DeliverConn(id string, payload []byte) {
	h.mu.RLock()
	c := h.conns[id]
	h.mu.RUnlock()
	if c != nil && c.out.send(textFrame(payload), 1) {
		h.stats.delivered.Add(1)
	}
}

// DeliverAll hands payload to every local connection.
func (h *Hub) DeliverAll(payload []byte) {
	frame := textFrame(payload)
	n := 0
	h.mu.RLock()
	for _, c := range h.conns {
		if c.out.send(frame, 1) {
			n++
		}
	}
	h.mu.RUnlock()
	h.stats.delivered.Add(uint64(n))
}

// Drain refuses new connections from now on.
func (h *Hub) Drain() {
	h.mu.Lock()
	h.draining = true
	h.mu.Unlock()
}

// CloseAll closes every connection with d once its queue is written.
func (h *Hub) CloseAll(d Disconnect) {
	h.mu.RLock()
	conns := make([]*Conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.RUnlock()
	for _, c := range conns {
		c.Close(d)
	}
}

// Wait waits until every connection has disconnected and every pending
// request has finished, or ctx ends.
func (h *Hub) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		h.requests.Wait()
		close(done)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		h.mu.RLock()
		n := len(h.conns)
		h.mu.RUnlock()
		if n == 0 {
			select {
			case <-done:
				return nil
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d connections: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
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

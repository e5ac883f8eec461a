package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Receiver takes what arrives for this node. The session hub implements it.
// Payloads belong to the receiver from the call on.
type Receiver interface {
	DeliverChannel(channel string, payload []byte)
	DeliverUser(user string, payload []byte)
	DeliverConn(conn string, payload []byte)
	DeliverAll(payload []byte)
}

// Errors.
var (
	ErrNoResponders = errors.New("broker: no responders")
	ErrNotStarted   = errors.New("broker: not started")
	ErrClosed       = errors.New("broker: closed")
)

// Header names on <prefix>.recv.<type> messages.
const (
	HeaderUser = "Push-User"
	HeaderConn = "Push-Conn"
	HeaderNode = "Push-Node"
)

const readyTimeout = 10 * time.Second

// Broker is one node's bus.
type Broker struct {
	cfg  Config
	subj Subjects
	recv Receiver
	log  *slog.Logger

	ns *server.Server // nil with Config.URL
	nc *nats.Conn

	mu        sync.Mutex
	interests map[string]*interest // guarded by mu; by channel
	fixed     []*nats.Subscription // guarded by mu; users, conns, all, nodes
	started   bool                 // guarded by mu
	stopping  bool                 // guarded by mu

	view *view

	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

// interest is one channel's subscription and how many local members want it.
type interest struct {
	sub     *nats.Subscription
	members int
}

// New checks cfg and returns a broker. It starts nothing.
func New(cfg Config) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Broker{
		cfg:       cfg,
		subj:      Subjects{Prefix: cfg.Prefix},
		log:       cfg.Logger,
		interests: make(map[string]*interest),
		view:      newView(cfg.Node, time.Duration(missedBeats)*cfg.Heartbeat),
		stop:      make(chan struct{}),
	}, nil
}

// Start starts the embedded NATS server (unless Config.URL is set), waits
// until it accepts clients, connects the node to it, subscribes it for recv
// and starts the heartbeat.
func (b *Broker) Start(ctx context.Context, recv Receiver) error {
	b.mu.Lock()
	if b.started || b.stopping {
		b.mu.Unlock()
		return errors.New("broker: Start called twice or after Shutdown")
	}
	b.started = true
	b.recv = recv
	b.mu.Unlock()

	if b.cfg.URL == "" {
		if err := b.startServer(); err != nil {
			return err
		}
	}
	if err := b.connect(ctx); err != nil {
		b.shutdownServer()
		return err
	}
	if err := b.subscribeFixed(); err != nil {
		b.nc.Close()
		b.shutdownServer()
		return err
	}
	b.beat(false) // the view holds this node from the start
	b.wg.Add(1)
	go b.heartbeat()
	return nil
}

func (b *Broker) startServer() error {
	host, port, err := splitHostPort(b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker.listen: %w", err)
	}
	opts := &server.Options{
		ServerName:      b.cfg.Node,
		Host:            host,
		Port:            port,
		NoSigs:          true,
		NoSystemAccount: true,
		// Route and client pings keep dead peers from lingering.
		PingInterval: 10 * time.Second,
	}
	if b.cfg.ClusterListen != "" {
		chost, cport, err := splitHostPort(b.cfg.ClusterListen)
		if err != nil {
			return fmt.Errorf("broker.cluster_listen: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: b.cfg.ClusterName, Host: chost, Port: cport}
		if len(b.cfg.Seeds) > 0 {
			opts.Routes = server.RoutesFromStr(strings.Join(b.cfg.Seeds, ","))
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start nats server: %w", err)
	}
	ns.SetLoggerV2(&natsLogger{log: b.log.With("server", "nats")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		return fmt.Errorf("start nats server: client port %s (cluster %q) not ready within %v; is the address in use?",
			b.cfg.Listen, b.cfg.ClusterListen, readyTimeout)
	}
	b.ns = ns
	return nil
}

func (b *Broker) connect(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("pushgrid-" + b.cfg.Node),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	url := b.cfg.URL
	if b.ns != nil {
		url = ""
		opts = append(opts, nats.InProcessServer(b.ns))
	} else {
		opts = append(opts, nats.RetryOnFailedConnect(false))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if url == "" {
			url = "embedded server"
		}
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	b.nc = nc
	return nil
}

func (b *Broker) subscribeFixed() error {
	type fixed struct {
		subject string
		cb      nats.MsgHandler
	}
	subs := []fixed{
		{b.subj.allUsers(), func(m *nats.Msg) {
			if u, ok := b.subj.key(m.Subject, "user"); ok {
				b.recv.DeliverUser(u, m.Data)
			}
		}},
		{b.subj.allConns(), func(m *nats.Msg) {
			if id, ok := b.subj.key(m.Subject, "conn"); ok {
				b.recv.DeliverConn(id, m.Data)
			}
		}},
		{b.subj.All(), func(m *nats.Msg) { b.recv.DeliverAll(m.Data) }},
		{b.subj.allNodes(), b.onHeartbeat},
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range subs {
		sub, err := b.nc.Subscribe(f.subject, f.cb)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", f.subject, err)
		}
		b.fixed = append(b.fixed, sub)
	}
	return b.nc.Flush()
}

// Subscribe counts one more local member of channel; the first one
// subscribes the node. It returns once the subscription is on the
// connection, so a later Publish on this broker sees it.
func (b *Broker) Subscribe(channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nc == nil || b.stopping {
		return ErrClosed
	}
	if in := b.interests[channel]; in != nil {
		in.members++
		return nil
	}
	sub, err := b.nc.Subscribe(b.subj.Channel(channel), func(m *nats.Msg) {
		b.recv.DeliverChannel(channel, m.Data)
	})
	if err != nil {
		return fmt.Errorf("subscribe channel %q: %w", channel, err)
	}
	// The channel's dispatcher bounds its own backlog; let NATS hold more
	// than its default before it calls the node a slow consumer.
	_ = sub.SetPendingLimits(-1, 256<<20)
	b.interests[channel] = &interest{sub: sub, members: 1}
	return nil
}

// Unsubscribe counts one local member of channel less; the last one
// unsubscribes the node.
func (b *Broker) Unsubscribe(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	in := b.interests[channel]
	if in == nil {
		return
	}
	in.members--
	if in.members > 0 {
		return
	}
	delete(b.interests, channel)
	if err := in.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Error("unsubscribe", "channel", channel, "err", err)
	}
}

// Subscriptions returns how many channels this node is subscribed to.
func (b *Broker) Subscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.interests)
}

// Publish sends payload to every member of channel on every node.
func (b *Broker) Publish(channel string, payload []byte) error {
	return b.publish(b.subj.Channel(channel), payload)
}

// Listening reports whether anyone in the cluster subscribes to event
// name. With an embedded server it asks the server, whose interest includes
// other nodes' routed subscriptions, so a cluster without event consumers
// pays nothing per connect and join; over an external NATS it cannot tell
// and says true.
func (b *Broker) Listening(name string) bool {
	return b.ns == nil || b.ns.GlobalAccount().SubscriptionInterest(b.subj.Event(name))
}

// PublishEvent publishes payload on <prefix>.events.<name>.
func (b *Broker) PublishEvent(name string, payload []byte) error {
	return b.publish(b.subj.Event(name), payload)
}

func (b *Broker) publish(subject string, payload []byte) error {
	if b.nc == nil {
		return ErrNotStarted
	}
	return b.nc.Publish(subject, payload)
}

// Send publishes a custom client frame on <prefix>.recv.<typ> with the
// sender's identity in headers. With wantReply it waits for a reply until
// ctx ends and returns ErrNoResponders when nobody listens.
func (b *Broker) Send(ctx context.Context, typ, user, conn string, payload []byte, wantReply bool) ([]byte, error) {
	if b.nc == nil {
		return nil, ErrNotStarted
	}
	m := &nats.Msg{
		Subject: b.subj.Recv(typ),
		Data:    payload,
		// Set directly: these exact spellings are the protocol.
		Header: nats.Header{HeaderUser: {user}, HeaderConn: {conn}, HeaderNode: {b.cfg.Node}},
	}
	if !wantReply {
		return nil, b.nc.PublishMsg(m)
	}
	reply, err := b.nc.RequestMsgWithContext(ctx, m)
	switch {
	case err == nil:
		return reply.Data, nil
	case errors.Is(err, nats.ErrNoResponders):
		return nil, ErrNoResponders
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, nats.ErrTimeout):
		return nil, context.DeadlineExceeded
	}
	return nil, err
}

// Conn is the node's own NATS connection.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// Server is the embedded NATS server, nil with Config.URL.
func (b *Broker) Server() *server.Server { return b.ns }

// Subjects returns the broker's subject scheme.
func (b *Broker) Subjects() Subjects { return b.subj }

// ClientURL is the URL backends use to reach this node's NATS.
func (b *Broker) ClientURL() string {
	if b.ns != nil {
		return b.ns.ClientURL()
	}
	return b.cfg.URL
}

// ClusterURL is the route URL other nodes can give as a seed, "" when
// routes are off.
func (b *Broker) ClusterURL() string {
	if b.ns == nil {
		return ""
	}
	if a := b.ns.ClusterAddr(); a != nil {
		return fmt.Sprintf("nats://%s", a.String())
	}
	return ""
}

// Nodes returns the live view of the cluster, this node included, sorted
// by name.
func (b *Broker) Nodes() []Node { return b.view.live(time.Now()) }

// Shutdown tells the cluster this node is leaving, flushes what it
// published, closes its connection and stops the embedded server. It is
// safe to call more than once; later calls return the first result.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.shutOnce.Do(func() {
		b.mu.Lock()
		b.stopping = true
		b.mu.Unlock()
		close(b.stop)
		b.wg.Wait()
		if b.nc != nil {
			b.beat(true)
			if err := flush(ctx, b.nc); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				b.shutErr = fmt.Errorf("flush nats: %w", err)
			}
			b.nc.Close()
		}
		b.shutdownServer()
	})
	return b.shutErr
}

func (b *Broker) shutdownServer() {
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// flush waits until the server has everything published so far, for as
// long as ctx allows (five seconds if ctx has no deadline).
func flush(ctx context.Context, nc *nats.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}

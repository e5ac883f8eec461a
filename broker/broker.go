package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Receiver takes what arrives for this node. The session hub implements it.
// Payloads belong to the receiver from the call on. DeliverChannel must not
// block: one goroutine delivers every channel's messages (channels.go).
type Receiver interface {
	DeliverChannel(channel string, payload []byte)
	// DeliverStored is a history channel's message as stored, with its
	// sequence in the channel's store; prev is the sequence of the
	// message stored before it in the channel (0 for none), so a receiver
	// can tell a message it missed.
	DeliverStored(channel string, seq, prev uint64, payload []byte)
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
	cfg       Config
	subj      Subjects
	recv      Receiver
	log       *slog.Logger
	natslog   *natsLogger
	instance  string                 // this run of the node, in every beat (see claim.go)
	since     time.Time              // when Start was called, in every beat
	seq       atomic.Uint64          // beats published
	otherSelf atomic.Pointer[string] // set once another instance's beat under this name is logged

	ns        *server.Server // nil with Config.URL
	storeLock *storeLock     // held while ns may have the store open
	nc        *nats.Conn
	// nodePassword admits nc to ns with every permission (access.go).
	nodePassword string
	routeTLS     *tls.Config // nil without routes or TLS; cloned to dial seeds (claim.go)

	// mu serialises Subscribe and Unsubscribe (it is held across their NATS
	// calls) and guards what follows.
	mu       sync.Mutex
	chans    map[string]*interest // by channel
	fixed    []*nats.Subscription // users, conns, all, nodes, claims
	started  bool
	stopping bool

	intake chan *nats.Msg // every channel subscription's messages (channels.go)

	view *view

	stop     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
	shutErr  error
}

// New checks cfg and returns a broker. It starts nothing.
func New(cfg Config) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	return &Broker{
		cfg:      cfg,
		subj:     Subjects{Prefix: cfg.Prefix},
		log:      cfg.Logger,
		natslog:  newNatsLogger(cfg.Logger.With("server", "nats"), cfg.ClusterName),
		instance: nuid.Next(),
		chans:    make(map[string]*interest),
		view:     newView(cfg.Node, time.Duration(missedBeats)*cfg.Heartbeat),
		stop:     make(chan struct{}),
	}, nil
}

// Start starts the embedded NATS server (unless Config.URL is set), waits
// until it accepts clients, connects the node to it, makes sure no live node
// of the cluster has this node's name (see claim.go), subscribes the node
// for recv and starts the heartbeat. A Start that fails leaves nothing
// running.
func (b *Broker) Start(ctx context.Context, recv Receiver) error {
	b.mu.Lock()
	if b.started || b.stopping {
		b.mu.Unlock()
		return errors.New("broker: Start called twice or after Shutdown")
	}
	b.started = true
	b.recv = recv
	b.since = time.Now().UTC()
	b.intake = make(chan *nats.Msg, intakeLen)
	b.mu.Unlock()

	if b.cfg.URL == "" {
		if err := b.startServer(); err != nil {
			return err
		}
	}
	err := b.connect(ctx)
	if err == nil {
		err = b.checkName(ctx)
	}
	if err == nil {
		err = b.subscribeFixed()
	}
	if err != nil {
		if b.nc != nil {
			b.nc.Close()
			b.nc = nil
		}
		b.shutdownServer()
		return err
	}
	b.startDelivery()
	b.beat(false) // the view holds this node from the start
	b.wg.Add(1)
	go b.heartbeat()
	return nil
}

// Routes across a partition. A peer cut off without a FIN (a network
// split, a host gone) keeps its route open until the route's pings go
// unanswered: at the server's ping interval (10 s, 2 missed) that is 20
// to 30 s, during which the cluster still hands it requests of queue
// groups (push.api.*, history reads) that nobody answers, and after a heal
// the dead connection waits for TCP's next retransmit. Pinging every
// second, a route is closed after about 3 s without an answer, as the
// node leaves the cluster view after three missed heartbeats.
const (
	routePing        = time.Second
	routeMaxPingsOut = 3
)

// implicitRouteRetries: a route to a peer learned from another node (not a
// seed) is tried again this many times, a second apart, after it drops,
// before it is given up. NATS's default is not to try again at all, so
// two nodes seeded only with a third stayed apart for good after a
// partition of half a minute, when their route had dropped while the
// network was down. A seed is tried for ever.
const implicitRouteRetries = 3600

func (b *Broker) startServer() error {
	host, port, err := splitHostPort(b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("nats.listen: %w", err)
	}
	if b.cfg.StoreDir != "" {
		lock, err := lockStore(b.cfg.StoreDir, b.cfg.Takeover)
		if err != nil {
			return err
		}
		b.storeLock = lock
	}
	started := false
	defer func() {
		if !started {
			b.storeLock.release()
		}
	}()
	if b.cfg.Takeover > 0 {
		if err := awaitPorts([]string{b.cfg.Listen, b.cfg.ClusterListen}, b.cfg.Takeover); err != nil {
			return fmt.Errorf("take over the NATS ports from the previous process: %w", err)
		}
	}
	b.nodePassword = rand.Text()
	opts := &server.Options{
		ServerName:      b.cfg.Node,
		Host:            host,
		Port:            port,
		NoSigs:          true,
		NoSystemAccount: true,
		// Route and client pings keep dead peers from lingering.
		PingInterval: 10 * time.Second,
		// Raised for what this node publishes, never lowered: backends may
		// rely on the NATS default.
		MaxPayload:                 int32(max(b.cfg.MaxPayload, server.MAX_PAYLOAD_SIZE)),
		CustomClientAuthentication: newClientAuth(b.cfg.Token, b.nodePassword, b.subj),
	}
	if b.cfg.TLSCert != "" {
		if opts.TLSConfig, err = b.cfg.clientTLS(); err != nil {
			return fmt.Errorf("nats.tls_cert: %w", err)
		}
	}
	if b.cfg.StoreDir != "" {
		opts.JetStream = true
		opts.StoreDir = b.cfg.StoreDir
	}
	if b.cfg.ClusterListen != "" {
		chost, cport, err := splitHostPort(b.cfg.ClusterListen)
		if err != nil {
			return fmt.Errorf("nats.cluster_listen: %w", err)
		}
		if cport == server.RANDOM_PORT && opts.JetStream && len(b.cfg.Seeds) == 0 {
			// The route to itself below needs the port before the server
			// starts.
			if cport, err = freePort(chost); err != nil {
				return fmt.Errorf("nats.cluster_listen: %w", err)
			}
		}
		opts.Cluster = server.ClusterOpts{
			Name: b.cfg.ClusterName, Host: chost, Port: cport,
			// A username makes the server ask for a credential in its
			// route INFO, even without a secret, and this is what it
			// presents on the routes it learns of (access.go).
			Username: routeUser, Password: b.cfg.ClusterSecret,
			PingInterval: routePing, MaxPingsOut: routeMaxPingsOut,
			ConnectRetries: implicitRouteRetries,
		}
		opts.CustomRouterAuthentication = routeAuth{secret: b.cfg.ClusterSecret, log: b.natslog}
		if b.cfg.TLSCert != "" {
			if b.routeTLS, err = b.cfg.routeTLS(); err != nil {
				return fmt.Errorf("route TLS (nats.tls_cert, nats.tls_key, nats.tls_ca): %w", err)
			}
			opts.Cluster.TLSConfig = b.routeTLS
		}
		switch {
		case len(b.cfg.Seeds) > 0:
			opts.Routes = routeURLs(b.cfg.Seeds, b.cfg.ClusterSecret)
		case opts.JetStream:
			// Clustered JetStream will not start without a route to
			// dial; the first node of a cluster, which the others seed
			// to, gets one to itself, which the server recognises and
			// drops. Its JetStream then waits for a second node to
			// elect a leader of the cluster's metadata.
			opts.Routes = routeURLs([]string{"nats://" + net.JoinHostPort(dialHost(chost), strconv.Itoa(cport))}, b.cfg.ClusterSecret)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start nats server: %w", err)
	}
	ns.SetLoggerV2(b.natslog, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		return fmt.Errorf("start nats server: client port %s (cluster %q) not ready within %v; is the address in use?",
			b.cfg.Listen, b.cfg.ClusterListen, readyTimeout)
	}
	b.ns = ns
	started = true
	return nil
}

func (b *Broker) connect(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("pushgrid-" + b.cfg.Node),
		nats.CustomInboxPrefix(b.subj.inbox()),
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
		opts = append(opts, nats.InProcessServer(b.ns), nats.UserInfo(nodeUser, b.nodePassword))
	} else {
		opts = append(opts, nats.RetryOnFailedConnect(false))
		if b.cfg.Token != "" {
			opts = append(opts, nats.Token(b.cfg.Token))
		}
		if b.cfg.TLSCA != "" {
			opts = append(opts, nats.RootCAs(b.cfg.TLSCA))
		}
		if b.cfg.TLSCert != "" {
			opts = append(opts, nats.ClientCert(b.cfg.TLSCert, b.cfg.TLSKey))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if url == "" {
			url = "embedded server"
		}
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	// Client frames of up to session.max_message_bytes are published
	// whole; a server that refuses them would fail them one by one.
	if limit := nc.MaxPayload(); int64(b.cfg.MaxPayload) > limit {
		nc.Close()
		return fmt.Errorf("nats.url: the server's max_payload is %d bytes, smaller than the %d this node publishes "+
			"(session.max_message_bytes plus the frame envelope); raise max_payload on the NATS servers or lower session.max_message_bytes",
			limit, b.cfg.MaxPayload)
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
		{b.subj.allClaims(), b.onClaim},
		{b.subj.allSyncs(), b.onSync},
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
	return b.request(ctx, m)
}

// AuthRequest asks the backends on <prefix>.auth who a client is
// (auth.mode = "hook") and returns the first answer's payload; it returns
// ErrNoResponders when no backend listens, and ctx's error when ctx ends
// first.
func (b *Broker) AuthRequest(ctx context.Context, payload []byte) ([]byte, error) {
	if b.nc == nil {
		return nil, ErrNotStarted
	}
	return b.request(ctx, &nats.Msg{Subject: b.subj.Auth(), Data: payload})
}

func (b *Broker) request(ctx context.Context, m *nats.Msg) ([]byte, error) {
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

// Instance is this run of the node: random, in every beat.
func (b *Broker) Instance() string { return b.instance }

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

// Routes returns how many other servers this node's embedded server has a
// route to (a route may be several pooled TCP connections; each server
// counts once), 0 with Config.URL or before Start.
func (b *Broker) Routes() int {
	if b.ns == nil {
		return 0
	}
	rz, err := b.ns.Routez(nil)
	if err != nil {
		return 0
	}
	peers := make(map[string]struct{}, len(rz.Routes))
	for _, r := range rz.Routes {
		peers[r.RemoteID] = struct{}{}
	}
	return len(peers)
}

// Nodes returns the live view of the cluster, this node included, sorted
// by name.
func (b *Broker) Nodes() []Node { return b.view.live(time.Now()) }

// Departed returns the nodes this node saw stop beating, or leave, within
// the last hour and that are not live again: each as its last beat said,
// At when that beat arrived.
func (b *Broker) Departed() []Node { return b.view.departed(time.Now()) }

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
	b.storeLock.release()
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

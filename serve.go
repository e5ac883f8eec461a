package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgrid/pushgrid/broker"
	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

// ServeCmd runs a node.
type ServeCmd struct {
	Config   kong.ConfigFlag `env:"PUSHGRID_CONFIG" placeholder:"FILE" help:"TOML configuration file (see config.example.toml)."`
	Settings `embed:""`
}

// defaultGCPercent is the GOGC a node runs with unless GOGC is set. Most
// of a node's memory is idle connections: live heap and goroutine stacks,
// and Go sizes the heap's headroom by both, so at Go's default (100) an
// idle node holds about as much garbage room as connections. The message
// path allocates per batch, not per member, so collecting sooner costs
// little CPU (measured: no slower connects or fanout, 7% less memory).
const defaultGCPercent = 50

func (s *ServeCmd) Run(e *env) error {
	cfgs, err := s.Settings.configs()
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	n, err := startNode(e.ctx, cfgs, e)
	if err != nil {
		return err
	}
	<-e.ctx.Done()
	n.log.Info("shutting down", "drain", cfgs.Gateway.Drain)
	ctx, cancel := context.WithTimeout(context.Background(), cfgs.Gateway.Drain+2*cfgs.Gateway.WriteTimeout+10*time.Second)
	defer cancel()
	return n.shutdown(ctx)
}

// node is one running pushgrid node: broker, hub, gateway and admin API.
type node struct {
	cfgs    Configs
	log     interface{ Info(string, ...any) }
	broker  *broker.Broker
	hub     *session.Hub
	gateway *gateway.Gateway
	admin   *http.Server
	adminLn net.Listener
}

// startNode starts every part of a node; on error it stops what it started.
func startNode(ctx context.Context, cfgs Configs, e *env) (*node, error) {
	log := cfgs.logger(e.stderr)
	cfgs.NATS.Logger = log.With("component", "broker")
	cfgs.Session.Logger = log.With("component", "session")
	cfgs.Gateway.Logger = log.With("component", "gateway")

	var n *node
	cfgs.NATS.Status = func() broker.Status { return n.status() }
	b, err := broker.New(cfgs.NATS)
	if err != nil {
		return nil, err
	}
	cfgs.Gateway.Metrics = append(cfgs.Gateway.Metrics, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushgrid_routes",
		Help: "Peer nodes this node's embedded NATS server has a route to.",
	}, func() float64 { return float64(b.Routes()) }))
	hub, err := session.New(cfgs.Session, b, backend{b}, nil)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(cfgs.Gateway, hub)
	if err != nil {
		return nil, err
	}
	n = &node{cfgs: cfgs, log: log, broker: b, hub: hub, gateway: gw}
	if err := b.Start(ctx, hub); err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		_ = b.Shutdown(context.Background())
		return nil, err
	}
	if cfgs.Admin.Listen != "" {
		ln, err := net.Listen("tcp", cfgs.Admin.Listen)
		if err != nil {
			_ = gw.Shutdown(context.Background())
			_ = b.Shutdown(context.Background())
			return nil, fmt.Errorf("admin.listen: %w", err)
		}
		n.adminLn = ln
		n.admin = gw.AdminServer(gateway.AdminHandler(hub, func() any { return b.Nodes() }))
		go func() { _ = n.admin.Serve(ln) }()
	}
	log.Info("pushgrid started", "version", version, "gateway", gw.Addr().String(), "nats", b.ClientURL(),
		"cluster", b.ClusterURL(), "admin", cfgs.Admin.Listen)
	return n, nil
}

func (n *node) status() broker.Status {
	conns, chans := n.hub.Counts()
	st := broker.Status{Connections: conns, Channels: chans}
	if a := n.gateway.Addr(); a != nil {
		st.Gateway = a.String()
	}
	return st
}

// shutdown drains the gateway, then stops the admin API and the broker.
func (n *node) shutdown(ctx context.Context) error {
	errGW := n.gateway.Shutdown(ctx)
	n.hub.Close()
	if n.admin != nil {
		_ = n.admin.Close()
	}
	errB := n.broker.Shutdown(ctx)
	return errors.Join(errGW, errB)
}

// backend is the broker as session.Backend: it turns the broker's
// no-responders error into the session's.
type backend struct{ *broker.Broker }

var (
	_ session.Bus     = (*broker.Broker)(nil)
	_ session.Backend = backend{}
	_ broker.Receiver = (*session.Hub)(nil)
)

func (b backend) Send(ctx context.Context, typ, user, conn string, payload []byte, wantReply bool) ([]byte, error) {
	reply, err := b.Broker.Send(ctx, typ, user, conn, payload, wantReply)
	if errors.Is(err, broker.ErrNoResponders) {
		err = session.ErrNoHandler
	}
	return reply, err
}

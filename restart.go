package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/pushgrid/pushgrid/node"
)

// In-place restarts (SIGHUP), after ../shared/notes/in-place-restart.md.
//
// The serving process starts the binary at its path (os.Args[0], looked up
// again, so a new version on disk is what runs) with its arguments and
// environment, and hands it the gateway's and the admin API's listening
// sockets (github.com/cloudflare/tableflip): the kernel keeps queueing
// connections on them whichever process accepts, so none is refused. The
// new process takes the sockets and says it is ready; the old one then
// stops accepting, shuts its NATS server down (the new one binds the same
// client and route ports and opens the same JetStream store once they are
// free, see broker/takeover.go), closes its clients with 1012 spread over
// gateway.drain, and exits 0. A new process that fails before it is ready
// (a bad binary or configuration) leaves the old one serving, which logs
// why; tableflip kills one that is not ready within restartTimeout.

// restartTimeout bounds how long the old process waits for the new one to
// be ready (holding the sockets, before its broker starts).
const restartTimeout = 30 * time.Second

// takeoverWait bounds how long the new process waits for the old one's
// NATS ports and store: the old one lets go of them as soon as the new one
// is ready, after its JetStream has stopped.
const takeoverWait = time.Minute

// The old process's NATS ports, for a new process whose configuration
// leaves them to the OS (port 0): the cluster's peers and the backends
// know the ports the old one had.
const (
	envNATSListen    = "PUSHGRID_RESTART_NATS_LISTEN"
	envClusterListen = "PUSHGRID_RESTART_CLUSTER_LISTEN"
)

// envPeers holds the route URLs of the nodes the old process had in its
// cluster view, seeds of the new one besides its own: a node started
// without seeds (the first of a cluster) would otherwise wait for its
// peers to dial it again (about a second) with no route, while its
// clients come back and ask for history.
const envPeers = "PUSHGRID_RESTART_PEERS"

// restarter hands a node's sockets from one process to the next.
type restarter struct {
	upg *tableflip.Upgrader
	log *slog.Logger
}

// newRestarter sets up in-place restarts; the PID file, when set, is
// written on ready.
func newRestarter(pidFile string, log *slog.Logger) (*restarter, error) {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: restartTimeout})
	if err != nil {
		return nil, fmt.Errorf("in-place restarts: %w", err)
	}
	return &restarter{upg: upg, log: log}, nil
}

// takingOver reports whether this process was started by a running one to
// take over from it.
func (r *restarter) takingOver() bool { return r.upg.HasParent() }

// inherit gives cfg the old process's NATS ports where cfg leaves them to
// the OS.
func (r *restarter) inherit(cfg *node.Config) {
	cfg.NATS.Listen = inheritPort(cfg.NATS.Listen, os.Getenv(envNATSListen))
	cfg.NATS.ClusterListen = inheritPort(cfg.NATS.ClusterListen, os.Getenv(envClusterListen))
	if cfg.NATS.URL != "" || cfg.NATS.ClusterListen == "" {
		return
	}
	for _, peer := range strings.Split(os.Getenv(envPeers), ",") {
		if peer != "" && !slices.Contains(cfg.NATS.Seeds, peer) {
			cfg.NATS.Seeds = append(cfg.NATS.Seeds, peer)
		}
	}
}

// inheritPort is was (the address the old process listened on) when want
// is the same host with port 0; else want.
func inheritPort(want, was string) string {
	wh, wp, err := net.SplitHostPort(want)
	if err != nil || wp != "0" || was == "" {
		return want
	}
	if oh, _, err := net.SplitHostPort(was); err != nil || oh != wh {
		return want
	}
	return was
}

// listen is the node's node.ListenFunc: the sockets the old process handed
// over under name, else open's, kept for the next process.
func (r *restarter) listen(name string, n int, open func() ([]net.Listener, error)) ([]net.Listener, error) {
	var inherited []net.Listener
	for i := 0; ; i++ {
		ln, err := r.upg.Listener("tcp", socketKey(name, i))
		if err != nil {
			closeListeners(inherited)
			return nil, err
		}
		if ln == nil {
			break
		}
		inherited = append(inherited, ln)
	}
	switch {
	case len(inherited) == n:
		r.log.Debug("listening sockets taken over", "what", name, "sockets", n)
		return inherited, nil
	case len(inherited) > 0:
		closeListeners(inherited)
		return nil, fmt.Errorf("%s: the running process has %d listening sockets and this configuration wants %d (gateway.workers changed?); "+
			"an in-place restart keeps them: to change their number, stop the node and start it again", name, len(inherited), n)
	}
	ls, err := open()
	if err != nil {
		return nil, err
	}
	for i, ln := range ls {
		tl, ok := ln.(tableflip.Listener)
		if !ok {
			closeListeners(ls)
			return nil, fmt.Errorf("%s: a %T cannot be handed to another process", name, ln)
		}
		if err := r.upg.AddListener("tcp", socketKey(name, i), tl); err != nil {
			closeListeners(ls)
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return ls, nil
}

// socketKey names the i-th socket of name between processes.
func socketKey(name string, i int) string { return fmt.Sprintf("%s #%d", name, i) }

func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// upgrade starts the next process and waits until it is ready, telling it
// this process's NATS ports.
func (r *restarter) upgrade(n *node.Node) error {
	setAddr := func(key, natsURL string) {
		if u, err := url.Parse(natsURL); err == nil && u.Host != "" {
			_ = os.Setenv(key, u.Host)
		}
	}
	setAddr(envNATSListen, n.NATSURL())
	setAddr(envClusterListen, n.Broker().ClusterURL())
	var peers []string
	for _, peer := range n.Broker().Nodes() {
		if u, err := url.Parse(peer.Cluster); err == nil && u.Scheme == "nats" && peer.Name != n.Name() {
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsUnspecified() {
				peers = append(peers, peer.Cluster)
			}
		}
	}
	_ = os.Setenv(envPeers, strings.Join(peers, ","))
	binary := os.Args[0]
	if !strings.Contains(binary, "/") {
		binary += " (from PATH)"
	}
	r.log.Info("SIGHUP: restarting in place", "binary", binary)
	return r.upg.Upgrade()
}

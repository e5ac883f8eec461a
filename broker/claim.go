package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Refusing a duplicate node name.
//
// Two live nodes of one name split their traffic and the cluster view, and
// nats-server refuses a route from a server of its own name only on the
// accepting side ("Remote server has a duplicate name"): the newcomer is
// partly or wholly cut off and retries forever. So Start fails, before this
// node publishes a single heartbeat, when a live node has its name:
//
//  1. With seeds, each seed's route port is dialled: it sends its INFO at
//     once (after the TLS handshake when routes use TLS), with its server
//     name. A seed whose name is ours (and whose server id is not ours: a
//     node may list itself as a seed) is a running node of our name, and
//     it is the case where NATS refuses our route, so nothing else could
//     tell. A seed that is down, or of another cluster, gives no route;
//     when no seed is up there is nobody to ask.
//  2. Start then waits, at most seedWait, for a route and for the cluster's
//     interest in claims to reach its server, and asks on
//     <prefix>.node.<name>.claim. Every started node answers from its view:
//     free, or held by another instance (with that instance's beat count).
//     The first answer is taken: the views agree but for a heartbeat.
//  3. Held is not yet a conflict. A node killed a moment ago and started
//     again at once under its name is still in the others' views until its
//     last beat expires; only a node that is still beating counts. So Start
//     asks again every Heartbeat/4 until the answer is free (the old beat
//     expired, or the answering node has no route to the holder's server,
//     so the holder cannot be beating to it) or the holder's beat count
//     moved on (it beat since: a conflict); that is bounded by the TTL. The
//     holder itself, when it answers, is a conflict at once.
//
// A start without a conflict costs a dial per seed, the route handshake and
// one round trip. With Config.URL there are no seeds: the claim is asked at
// once, and a NATS where no node listens says "no responders" at once.
// Without seeds and URL there is nobody to ask.
//
// Not covered: two nodes of one name started at the same moment see
// neither's beat and may both start; each then logs the other's beats.
const (
	seedWait     = 2 * time.Second // for routes and claim interest, all seeds together
	seedDial     = time.Second     // for one seed's INFO
	interestWait = time.Second     // for claim interest once a route is up
	claimTimeout = time.Second     // for an answer when some server listens
)

// ErrNameInUse is what Start's error matches (errors.Is) when a live node
// of the cluster has this node's name.
var ErrNameInUse = errors.New("broker: node name in use")

type nameInUseError struct{ name, why string }

func (e *nameInUseError) Error() string {
	return fmt.Sprintf("node name %q is already in use in the cluster (%s); every node needs its own name", e.name, e.why)
}

func (e *nameInUseError) Is(target error) bool { return target == ErrNameInUse }

// claimAsk is what a starting node sends on <prefix>.node.<name>.claim.
type claimAsk struct {
	Instance string `json:"instance"`
}

// claimAnswer is a started node's answer.
type claimAnswer struct {
	From     string    `json:"from"`
	Held     bool      `json:"held"`
	Self     bool      `json:"self,omitempty"` // From is the holder
	Instance string    `json:"instance,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Seq      uint64    `json:"seq,omitempty"`
}

// checkName fails when a live node of the cluster has this node's name.
func (b *Broker) checkName(ctx context.Context) error {
	if b.ns != nil {
		if len(b.cfg.Seeds) == 0 {
			return nil
		}
		deadline := time.Now().Add(seedWait)
		up, err := b.checkSeeds(ctx, deadline)
		if err != nil || up == 0 {
			return err
		}
		if !b.awaitClaimInterest(ctx, deadline) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if b.ns.NumRoutes() == 0 {
				b.log.Warn("no route to a seed came up in time; starting without the duplicate node name check", "within", seedWait)
			} else {
				b.log.Warn("no node answers name claims yet (the seeds are starting too, or are older versions); starting without the duplicate node name check")
			}
			return nil
		}
	}
	return b.claim(ctx)
}

// checkSeeds reads every seed's INFO and returns how many are up and of
// this cluster, or the error when one is a running node of this name.
func (b *Broker) checkSeeds(ctx context.Context, deadline time.Time) (int, error) {
	type result struct {
		seed, addr string
		info       server.Info
		err        error
	}
	results := make([]result, len(b.cfg.Seeds))
	var wg sync.WaitGroup
	for i, seed := range b.cfg.Seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.seed = seed
			r.addr, r.info, r.err = seedInfo(ctx, seed, earlier(time.Now().Add(seedDial), deadline), b.routeTLS)
		}()
	}
	wg.Wait()
	up := 0
	for _, r := range results {
		switch {
		case r.err != nil:
			b.log.Debug("seed not checked", "seed", r.seed, "err", r.err)
		case r.info.ID == b.ns.ID():
			// This node itself.
		case r.info.Cluster != b.cfg.ClusterName:
			// Its routes will be refused; the NATS log says so, with the
			// name learnt here.
			b.natslog.peerCluster(r.addr, r.info.Cluster)
		case r.info.Name == b.cfg.Node:
			return 0, &nameInUseError{name: b.cfg.Node, why: fmt.Sprintf("the seed %s is a running node of that name", r.seed)}
		default:
			up++
		}
	}
	return up, ctx.Err()
}

// seedInfo dials a route URL and returns the address it reached and the
// INFO the server sends on connect. With tc (the routes' TLS), it first
// shakes hands as a route does, certificate and all.
func seedInfo(ctx context.Context, seed string, deadline time.Time, tc *tls.Config) (string, server.Info, error) {
	var info server.Info
	u, err := url.Parse(seed)
	if err != nil {
		return "", info, err
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return "", info, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	if tc != nil {
		tc = tc.Clone()
		tc.ServerName = u.Hostname()
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return "", info, fmt.Errorf("TLS: %w", err)
		}
		conn = tconn
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 1<<20)).ReadSlice('\n')
	if err != nil {
		return "", info, fmt.Errorf("read INFO: %w", err)
	}
	js, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("INFO "))
	if !ok {
		return "", info, fmt.Errorf("not a NATS route port: %.40q", line)
	}
	if err := json.Unmarshal(js, &info); err != nil {
		return "", info, fmt.Errorf("bad INFO: %w", err)
	}
	return conn.RemoteAddr().String(), info, nil
}

// awaitClaimInterest waits until another node's interest in claims has
// reached this node's server (this node does not listen to claims before
// its own is settled), so a claim will be answered.
func (b *Broker) awaitClaimInterest(ctx context.Context, deadline time.Time) bool {
	subject := b.subj.claim(b.cfg.Node)
	acc := b.ns.GlobalAccount()
	routed := false
	for {
		if acc.SubscriptionInterest(subject) {
			return true
		}
		if !routed && b.ns.NumRoutes() > 0 {
			// The interest comes with the route's handshake; a peer that
			// never sends it is an older node that does not answer.
			routed = true
			deadline = earlier(deadline, time.Now().Add(interestWait))
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// claim asks the cluster whether a live node has this node's name, until
// the answer is settled (see the top of this file).
func (b *Broker) claim(ctx context.Context) error {
	subject := b.subj.claim(b.cfg.Node)
	ask, _ := json.Marshal(claimAsk{Instance: b.instance})
	ttl := time.Duration(missedBeats) * b.cfg.Heartbeat
	deadline := time.Now().Add(ttl + b.cfg.Heartbeat)
	var held claimAnswer
	for {
		ans, err := b.askClaim(ctx, subject, ask)
		if err != nil {
			return err
		}
		if ans == nil || !ans.Held {
			return nil
		}
		if ans.Self {
			return &nameInUseError{name: b.cfg.Node, why: fmt.Sprintf("that node answers, running since %s", ans.Started.Format(time.RFC3339))}
		}
		if ans.Instance == held.Instance && ans.Seq > held.Seq {
			return &nameInUseError{name: b.cfg.Node, why: fmt.Sprintf("a node of that name, running since %s, still beats to node %s",
				ans.Started.Format(time.RFC3339), ans.From)}
		}
		if ans.Instance != held.Instance {
			held = *ans
		}
		if time.Now().After(deadline) {
			b.log.Warn("a node of this name is still in the cluster view but does not beat; starting", "says", ans.From)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.cfg.Heartbeat / 4):
		}
	}
}

// askClaim returns the first answer, or nil when there is none.
func (b *Broker) askClaim(ctx context.Context, subject string, ask []byte) (*claimAnswer, error) {
	rctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	m, err := b.nc.RequestWithContext(rctx, subject, ask)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// No responders, or nobody answered in time: a server that listens
		// without answering is not a pushgrid node.
		return nil, nil
	}
	var ans claimAnswer
	if err := json.Unmarshal(m.Data, &ans); err != nil {
		return nil, nil
	}
	return &ans, nil
}

// onClaim answers a starting node's claim from this node's view.
func (b *Broker) onClaim(m *nats.Msg) {
	rest, _ := b.subj.key(m.Subject, "node")
	name, ok := strings.CutSuffix(rest, ".claim")
	var ask claimAsk
	if !ok || m.Reply == "" || json.Unmarshal(m.Data, &ask) != nil || ask.Instance == b.instance {
		return
	}
	ans := claimAnswer{From: b.cfg.Node}
	if name == b.cfg.Node {
		ans = claimAnswer{From: b.cfg.Node, Held: true, Self: true, Instance: b.instance, Started: b.since, Seq: b.seq.Load()}
	} else if n, ok := b.view.get(name, time.Now()); ok && n.Instance != ask.Instance && b.routedTo(n) {
		ans.Held, ans.Instance, ans.Started, ans.Seq = true, n.Instance, n.Started, n.Seq
	}
	data, _ := json.Marshal(ans)
	if err := m.Respond(data); err != nil {
		b.log.Debug("claim answer", "err", err)
	}
}

// routedTo reports whether n can still be beating to this node: false only
// when this node's embedded server knows n's server and has no route to it.
func (b *Broker) routedTo(n Node) bool {
	if b.ns == nil || n.ServerID == "" {
		return true
	}
	rz, err := b.ns.Routez(nil)
	if err != nil {
		return true
	}
	for _, r := range rz.Routes {
		if r.RemoteID == n.ServerID {
			return true
		}
	}
	return false
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

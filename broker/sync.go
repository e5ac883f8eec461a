package broker

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Interest barrier. NATS sends a new subscription's interest to the other
// servers of the cluster as it subscribes, and a server forwards nothing
// to this one for that subject until the interest has arrived. For a
// history channel that matters: its stream's leader republishes each
// stored message once, so one republished before the leader's server knew
// of this node's new subscription never reaches the node. Meanwhile the
// join that made the subscription reads the channel's last seq through
// JetStream's API, whose requests travel as the system account's, on
// another route than the interest, and may overtake it: the joiner is
// told a seq, and the message after it never comes.
//
// So the first subscription of a history channel on a node returns only
// once every other live node has answered a request sent after it on the
// same connection. The request is in the same account as the interest,
// so it travels the same route to each server (one connection per account
// and server pair, in order): when a node's answer comes, its server has
// the interest. (With --nats-url the stream's leader may be a server no
// node is on; then there is no one to ask, and this guarantee is lost.)

// syncWait bounds the wait for the other nodes' answers; a node that does
// not answer in time (cut off, or an older version) is not waited for.
const syncWait = 500 * time.Millisecond

// onSync answers another node's interest barrier with this node's name.
func (b *Broker) onSync(m *nats.Msg) {
	rest, _ := b.subj.key(m.Subject, "node")
	name, ok := strings.CutSuffix(rest, ".sync")
	if !ok || m.Reply == "" || name == b.cfg.Node {
		return
	}
	if err := m.Respond([]byte(b.cfg.Node)); err != nil {
		b.log.Debug("sync answer", "err", err)
	}
}

// syncInterest returns once every other live node's server has the
// subscriptions this node made so far, or after syncWait.
func (b *Broker) syncInterest() {
	want := map[string]bool{}
	for _, n := range b.Nodes() {
		if n.Name != b.cfg.Node {
			want[n.Name] = true
		}
	}
	if len(want) == 0 {
		return
	}
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		b.log.Debug("interest barrier", "err", err)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(b.subj.sync(b.cfg.Node), inbox, nil); err != nil {
		b.log.Debug("interest barrier", "err", err)
		return
	}
	deadline := time.Now().Add(syncWait)
	for len(want) > 0 {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			b.log.Debug("interest barrier: nodes did not answer", "nodes", len(want), "err", err)
			return
		}
		delete(want, string(m.Data))
	}
}

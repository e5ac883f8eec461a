package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// TestStreamReplicasNeverLowered: a node that joins a cluster whose
// history streams have 3 replicas sees only itself at first; it must not
// scale them down meanwhile (a loss then would lose stored messages).
func TestStreamReplicasNeverLowered(t *testing.T) {
	rule := session.DefaultRule()
	rule.Pattern, rule.History = session.MustPattern("h.>"), 10
	var nodes []*node.Node
	start := func(name string) *node.Node {
		var seeds []string
		if len(nodes) > 0 {
			seeds = []string{nodes[0].ClusterURL()}
		}
		cfg := testConfig(t, name, seeds...)
		cfg.Channels = append([]session.Rule{rule}, cfg.Channels...)
		n := startNode(t, cfg)
		nodes = append(nodes, n)
		return n
	}
	for i := 1; i <= 3; i++ {
		start(fmt.Sprintf("r%d", i))
	}
	waitFor(t, "replicas 3", func() bool {
		for _, n := range nodes {
			if n.HistoryReplicas() < 3 {
				return false
			}
		}
		return true
	})
	js, _ := jetstream.New(nodes[0].Broker().Conn())
	var name string
	lister := js.ListStreams(context.Background())
	for info := range lister.Info() {
		name = info.Config.Name
		t.Logf("stream %s replicas %d", name, info.Config.Replicas)
	}
	done := make(chan struct{})
	minR := 99
	go func() {
		defer close(done)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			ctx, c := context.WithTimeout(context.Background(), time.Second)
			st, err := js.Stream(ctx, name)
			if err == nil {
				if info, err := st.Info(ctx); err == nil && info.Config.Replicas < minR {
					minR = info.Config.Replicas
				}
			}
			c()
		}
	}()
	n4 := start("r4")
	<-done
	t.Logf("r4 HistoryReplicas %d; min stream replicas seen while r4 started: %d", n4.HistoryReplicas(), minR)
	if minR < 3 {
		t.Errorf("stream replicas lowered to %d", minR)
	}
}

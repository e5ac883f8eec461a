package bench

import (
	"context"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// TestRecover: subscribers of a history channel leave, messages are
// stored meanwhile, and every one comes back with since and gets them
// all, once; a channel without history is refused with a clear error.
func TestRecover(t *testing.T) {
	ws, nats := startNode(t, func(c *node.Config) {
		r := session.DefaultRule()
		r.Pattern, r.History, r.Announce = session.MustPattern("bench0"), 50, false
		c.Channels = []session.Rule{r}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{URLs: []string{ws}, NATS: nats, Subs: 20, Recover: 30, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Recovery
	if rec == nil || rec.Clients != 20 || rec.Complete != 20 || rec.Recovered != 20 || rec.Duplicates != 0 || rec.Timeout {
		t.Fatalf("recovery %+v, want 20 clients, all recovered and complete, no duplicates", rec)
	}

	// Two channels: bench1 keeps no history.
	if _, err := Run(ctx, Config{URLs: []string{ws}, NATS: nats, Subs: 4, Channels: 2, Recover: 3, Timeout: 10 * time.Second}); err == nil {
		t.Fatal("recovery on a channel without history: no error")
	}
}

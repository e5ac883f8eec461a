package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startErr starts a node like startNode and returns Start's error; a node
// that starts is shut down with the test.
func startErr(t testing.TB, name string, seeds ...string) (*Broker, error) {
	t.Helper()
	b, err := New(Config{
		Node:          name,
		Listen:        "127.0.0.1:0",
		ClusterListen: "127.0.0.1:0",
		Seeds:         seeds,
		Heartbeat:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background(), &recorder{})
	if err == nil {
		t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	}
	return b, err
}

func TestDuplicateNodeName(t *testing.T) {
	n1, _ := startNode(t, "n1")
	seed := n1.ClusterURL()
	start := time.Now()
	n2, _ := startNode(t, "n2", seed)
	// Checking the name must not make a start without a conflict slow.
	if d := time.Since(start); d > time.Second {
		t.Errorf("a seeded start without a conflict took %v", d)
	}
	n3, _ := startNode(t, "n3", seed)
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "n1 n2 n3 ", 3*time.Second)
	}

	// Every beat anywhere in the cluster, to show the refused never beat.
	watch, err := nats.Connect(n1.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	beats := make(chan *nats.Msg, 1024)
	if _, err := watch.ChanSubscribe(n1.Subjects().Node("*"), beats); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}

	cases := []struct{ name, why string }{
		{"n2", "a live node that is not the seed"},
		{"n1", "the seed itself"},
	}
	refused := map[string]bool{}
	for _, c := range cases {
		t.Run(c.why, func(t *testing.T) {
			b, err := startErr(t, c.name, seed)
			if err == nil {
				t.Fatalf("a second %s started", c.name)
			}
			refused[b.instance] = true
			want := `node name "` + c.name + `" is already in use in the cluster`
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "every node needs its own name") {
				t.Fatalf("error %q, want it to say %q", err, want)
			}
			if !errors.Is(err, ErrNameInUse) {
				t.Fatalf("error %q is not ErrNameInUse", err)
			}
		})
	}
	// The refused nodes never beat: the views hold the three live nodes.
	checkView(t, n1, "n1 n2 n3 ", time.Second) // a round of beats has passed through watch
	for len(beats) > 0 {
		var n Node
		if err := json.Unmarshal((<-beats).Data, &n); err != nil {
			t.Fatal(err)
		}
		if refused[n.Instance] {
			t.Fatalf("a refused node beat: %+v", n)
		}
	}
	for _, b := range []*Broker{n1, n2, n3} {
		checkView(t, b, "n1 n2 n3 ", time.Second)
		for _, n := range b.Nodes() {
			if want := map[string]string{"n1": n1.instance, "n2": n2.instance, "n3": n3.instance}[n.Name]; n.Instance != want {
				t.Fatalf("%s sees %s as instance %q, want %q", b.cfg.Node, n.Name, n.Instance, want)
			}
		}
	}

	// A node killed and started again at once under its own name starts,
	// although the others still hold its last beat.
	kill(n3)
	n3b, err := startErr(t, "n3", seed)
	if err != nil {
		t.Fatalf("restart after a crash: %v", err)
	}
	for _, b := range []*Broker{n1, n2, n3b} {
		checkView(t, b, "n1 n2 n3 ", 3*time.Second)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAdminBeyondLoopbackRefused: pushgrid serve with the admin API on
// every interface and no admin.token exits non-zero before it opens any
// port, with a message that names admin.token.
func TestAdminBeyondLoopbackRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildBinary(t), "serve", "--node", "adm1", "--listen", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--cluster-listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0")
	// Nothing from the caller's environment, a token least of all.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHGRID_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("still running after 30s:\n%s", stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero exit code\n%s", err, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "admin.token") || strings.Contains(out, "pushgrid started") {
		t.Fatalf("want a refusal naming admin.token before the start, got:\n%s", out)
	}
}

// TestClusterViewRoutes: the cluster view (/api/cluster) says how many
// peers each node is routed to, as its heartbeats tell: in a cluster of
// three, two each; a node that loses its routes says so (what a node cut
// off by a partition shows its own side).
func TestClusterViewRoutes(t *testing.T) {
	n1 := startTestNode(t, "n1", nil, "--admin-listen", "127.0.0.1:0")
	startTestNode(t, "n2", []string{n1.broker.ClusterURL()})
	n3 := startTestNode(t, "n3", []string{n1.broker.ClusterURL()})
	awaitNodes(t, n1, 3)
	routes := func() (map[string]float64, error) {
		code, body := httpGet(t, "http://"+n1.AdminAddr()+"/api/cluster")
		if code != 200 {
			return nil, fmt.Errorf("GET /api/cluster: %d %s", code, body)
		}
		var view struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, n := range view.Nodes {
			if r, ok := n["routes"].(float64); ok && n["status"] == "up" {
				out[n["node"].(string)] = r
			}
		}
		return out, nil
	}
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got, err := routes()
		if err == nil && (len(got) != 3 || got["n1"] != 2 || got["n2"] != 2 || got["n3"] != 2) {
			err = fmt.Errorf("routes %v, want 2 for each of n1 n2 n3", got)
		}
		return err
	})
	// n3 goes away: n1 and n2 are each left with one route.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n3.Shutdown(ctx)
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got, err := routes()
		if err == nil && (len(got) != 2 || got["n1"] != 1 || got["n2"] != 1) {
			err = fmt.Errorf("routes %v, want 1 for each of n1 n2", got)
		}
		return err
	})
}

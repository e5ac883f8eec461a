package main

import (
	"bytes"
	"context"
	"errors"
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

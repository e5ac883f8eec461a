package node_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgrid/pushgrid/node"
)

// TestAdminBeyondLoopbackNeedsToken: an admin listener that other hosts
// can reach is refused without admin.token, with an error that names it;
// a loopback one, or one with a token, is not.
func TestAdminBeyondLoopbackNeedsToken(t *testing.T) {
	const token = "0123456789abcdef0123"
	for _, c := range []struct {
		listen, token string
		want          string // "" when accepted
	}{
		{"127.0.0.1:6003", "", ""},
		{"127.0.0.9:0", "", ""},
		{"[::1]:6003", "", ""},
		{"localhost:6003", "", ""},
		{"", "", ""},
		{":6003", "", "admin.token"},
		{"0.0.0.0:6003", "", "admin.token"},
		{"[::]:6003", "", "admin.token"},
		{"10.1.2.3:6003", "", "admin.token"},
		{"admin.internal:6003", "", "admin.token"},
		{"0.0.0.0:6003", token, ""},
		{"127.0.0.1:6003", "short", "admin.token: 5 bytes"},
		{"127.0.0.1:6003", strings.Repeat("x", 257), "admin.token: 257 bytes"},
		{"127.0.0.1:6003", "0123456789 abcdef", "admin.token: byte 11 is a space"},
		{"", "short", "admin.token: 5 bytes"},
	} {
		t.Run(c.listen+"/"+c.token, func(t *testing.T) {
			cfg := testConfig(t, "a1")
			cfg.Admin = node.AdminConfig{Listen: c.listen, Token: c.token}
			err := cfg.Check()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Check = %v, want an error with %q", err, c.want)
			case c.want == "admin.token" && !strings.Contains(err.Error(), "beyond loopback"):
				t.Fatalf("Check = %v, want it to say why", err)
			}
		})
	}
}

// TestAdminToken: a node with admin.token answers its admin API, pprof
// included, only to requests that carry the token.
func TestAdminToken(t *testing.T) {
	const token = "0123456789abcdef0123"
	cfg := testConfig(t, "a1")
	cfg.Admin.Token = token
	n := startNode(t, cfg)
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/api/stats", "/debug/pprof/"} {
		for auth, want := range map[string]int{"": http.StatusUnauthorized, "Bearer " + token: http.StatusOK} {
			req, err := http.NewRequest("GET", "http://"+n.AdminAddr()+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, resp.StatusCode, want)
			}
		}
	}
}

package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAdminToken: with a token, every admin request, pprof included, needs
// it as a bearer token, else 401 with a JSON body and a challenge; without
// one, the API is open.
func TestAdminToken(t *testing.T) {
	const token = "0123456789abcdef-token"
	g, err := New(Config{}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	locked := g.AdminServer(AdminHandler(g.hub, func() any { return []string{"n1"} }, nil, token)).Handler
	open := g.AdminServer(AdminHandler(g.hub, func() any { return []string{"n1"} }, nil, "")).Handler
	for _, path := range []string{"/", "/api/nodes", "/api/stats", "/debug/pprof/", "/debug/pprof/cmdline"} {
		for _, c := range []struct {
			name, auth string
			h          http.Handler
			want       int
		}{
			{"no header", "", locked, http.StatusUnauthorized},
			{"wrong token", "Bearer 0123456789abcdef-tokeN", locked, http.StatusUnauthorized},
			{"token prefix", "Bearer 0123456789abcdef", locked, http.StatusUnauthorized},
			{"another scheme", "Basic " + token, locked, http.StatusUnauthorized},
			{"no scheme", token, locked, http.StatusUnauthorized},
			{"token", "Bearer " + token, locked, http.StatusOK},
			{"scheme in lower case", "bearer " + token, locked, http.StatusOK},
			{"no token configured", "", open, http.StatusOK},
		} {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				req := httptest.NewRequest("GET", path, nil)
				if c.auth != "" {
					req.Header.Set("Authorization", c.auth)
				}
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, req)
				if rec.Code != c.want {
					t.Fatalf("%d, want %d: %s", rec.Code, c.want, rec.Body)
				}
				if c.want != http.StatusUnauthorized {
					return
				}
				var body struct{ Error string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" ||
					rec.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("not a JSON error: %q (%s), %v", rec.Body, rec.Header().Get("Content-Type"), err)
				}
				if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
					t.Fatalf("WWW-Authenticate %q, want Bearer", got)
				}
			})
		}
	}
}

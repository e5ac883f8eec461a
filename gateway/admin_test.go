package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAdminToken: with a token, every admin API request, pprof included,
// needs it as a bearer token (or the login's cookie: TestAdminLogin),
// else 401 with a JSON body and a challenge; without one, the API is open.
func TestAdminToken(t *testing.T) {
	const token = "0123456789abcdef-token"
	g, err := New(Config{}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	nodes := func() any { return []string{"n1"} }
	locked := g.AdminServer(AdminHandler(Admin{Hub: g.hub, Nodes: nodes, Cluster: nodes, Token: token})).Handler
	open := g.AdminServer(AdminHandler(Admin{Hub: g.hub, Nodes: nodes, Cluster: nodes})).Handler
	for _, path := range []string{"/api/nodes", "/api/cluster", "/api/stats", "/debug/pprof/", "/debug/pprof/cmdline"} {
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

// TestAdminLogin: the page's files are served to anyone; the login form
// with the right token sets an HttpOnly, SameSite=Strict cookie (not the
// token) that opens the API; a wrong token sets none; logout clears it.
func TestAdminLogin(t *testing.T) {
	const token = "0123456789abcdef-token"
	g, err := New(Config{}, newHub(t))
	if err != nil {
		t.Fatal(err)
	}
	nodes := func() any { return []string{"n1"} }
	h := g.AdminServer(AdminHandler(Admin{Hub: g.hub, Nodes: nodes, Cluster: nodes, Token: token})).Handler
	do := func(method, path, body string, cookie *http.Cookie) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/", "/favicon.ico", "/admin.js"} {
		if rec := do("GET", path, "", nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, rec.Code)
		}
	}
	if rec := do("GET", "/secret.txt", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("GET an unknown file: %d", rec.Code)
	}

	if rec := do("GET", "/api/session", "", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"logged_in": false`) {
		t.Fatalf("session before login: %d %s", rec.Code, rec.Body)
	}
	rec := do("POST", "/login", "token=wrong-token-0123456789", nil)
	if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) != 0 || rec.Header().Get("Location") != "/?login=failed" {
		t.Fatalf("a wrong token: %d, cookies %v, location %q", rec.Code, rec.Result().Cookies(), rec.Header().Get("Location"))
	}
	rec = do("POST", "/login", "token="+token, nil)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", rec.Code, cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Value == "" || strings.Contains(c.Value, token) {
		t.Fatalf("session cookie %+v", c)
	}
	if rec := do("GET", "/api/session", "", c); !strings.Contains(rec.Body.String(), `"logged_in": true`) {
		t.Fatalf("session after login: %s", rec.Body)
	}
	if rec := do("GET", "/api/cluster", "", c); rec.Code != http.StatusOK {
		t.Fatalf("API with the session cookie: %d", rec.Code)
	}
	forged := &http.Cookie{Name: c.Name, Value: sessionValue("another-token-0123456")}
	if rec := do("GET", "/api/cluster", "", forged); rec.Code != http.StatusUnauthorized {
		t.Fatalf("API with another token's cookie: %d", rec.Code)
	}
	rec = do("POST", "/logout", "", c)
	if out := rec.Result().Cookies(); len(out) != 1 || out[0].MaxAge >= 0 {
		t.Fatalf("logout did not clear the cookie: %v", out)
	}
}

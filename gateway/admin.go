package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/pushgrid/pushgrid/session"
)

// Admin is what the admin listener serves.
type Admin struct {
	Hub *session.Hub
	// Nodes is the live cluster view (GET /api/nodes); Cluster the admin
	// page's (GET /api/cluster: every node's figures, and the nodes that
	// stopped beating).
	Nodes, Cluster func() any
	// Call answers the server API (POST /api/<method>, PROTOCOL.md §7);
	// nil: none.
	Call func(ctx context.Context, method string, req []byte) []byte
	// Token, when set, locks everything but the page's own files and the
	// login: "Authorization: Bearer <token>" (scripts) or the session
	// cookie the login form sets (the page).
	Token string
}

// adminCookie is the admin page's session cookie: a digest of the token,
// never the token itself, so a cookie is worth nothing once the token
// changes.
const adminCookie = "pushgrid_admin"

// AdminHandler serves the admin page (/, with its files), the login form
// (POST /login, POST /logout), the admin API: GET /api/nodes, GET
// /api/cluster, GET /api/stats (this node's figures), POST /api/<method>
// (the server API), and /debug/pprof/, Go's profiler. With a token, every
// request but the page's files and the login must carry the token or the
// session cookie, else it is answered 401; without one, it is meant for a
// loopback address (the node refuses any other).
func AdminHandler(a Admin) http.Handler {
	api := http.NewServeMux()
	if a.Call != nil {
		api.HandleFunc("POST /api/{method}", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIRequest))
			if err != nil {
				writeJSONError(w, http.StatusRequestEntityTooLarge, "a server API request is at most 1 MiB")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(a.Call(r.Context(), r.PathValue("method"), body))
		})
	}
	api.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Nodes()) })
	if a.Cluster != nil {
		api.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Cluster()) })
	}
	api.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, a.Hub.Stats()) })
	api.HandleFunc("/debug/pprof/", pprof.Index)
	api.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	api.HandleFunc("/debug/pprof/profile", pprof.Profile)
	api.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	api.HandleFunc("/debug/pprof/trace", pprof.Trace)
	var locked http.Handler = api
	if a.Token != "" {
		locked = requireToken(api, a.Token)
	}

	mux := http.NewServeMux()
	page := staticHandler("static/admin")
	mux.Handle("GET /", page) // the page and its files: nothing secret
	// Whether the page must ask for the token: answered to anyone, so the
	// page learns it without a failed request.
	mux.HandleFunc("GET /api/session", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"locked": a.Token != "", "logged_in": a.Token == "" || authorized(r, a.Token)})
	})
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.Handle(m+" /api/", locked)
		mux.Handle(m+" /debug/", locked)
	}
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if a.Token == "" {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if !tokenMatches(r.PostFormValue("token"), a.Token) {
			http.Redirect(w, r, "/?login=failed", http.StatusSeeOther)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: sessionValue(a.Token), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	return mux
}

// maxAPIRequest bounds a server API request's body.
const maxAPIRequest = 1 << 20

// sessionValue is the session cookie's value for token: an HMAC of a
// fixed label under the token.
func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("pushgrid admin session"))
	return hex.EncodeToString(m.Sum(nil))
}

// tokenMatches compares got with token as SHA-256 digests, in constant
// time: neither the time taken nor an early mismatch tells how much of a
// guess was right, or the token's length.
func tokenMatches(got, token string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// requireToken lets through the requests that carry "Authorization: Bearer
// token", or the session cookie of the login form, and answers the others
// 401 with a JSON body.
func requireToken(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r, token) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSONError(w, http.StatusUnauthorized, "this admin API needs Authorization: Bearer <admin.token>, or the admin page's login")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries token as a bearer token, or the
// login's session cookie.
func authorized(r *http.Request, token string) bool {
	scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	// The scheme is case-insensitive (RFC 9110 §11.1).
	if strings.EqualFold(scheme, "Bearer") && tokenMatches(strings.TrimLeft(got, " "), token) {
		return true
	}
	c, err := r.Cookie(adminCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(sessionValue(token))) == 1
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

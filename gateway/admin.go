package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/pushgrid/pushgrid/session"
)

// AdminHandler serves the admin API: GET /api/nodes is the live cluster
// view (whatever nodes returns), GET /api/stats this node's figures, POST
// /api/<method> the server API (PROTOCOL.md §7) through call (nil: none),
// and /debug/pprof/ Go's profiler. With a token, every request must carry
// "Authorization: Bearer <token>", else it is answered 401; without one,
// it is meant for a loopback address (the node refuses any other).
func AdminHandler(hub *session.Hub, nodes func() any, call func(ctx context.Context, method string, req []byte) []byte, token string) http.Handler {
	mux := http.NewServeMux()
	if call != nil {
		mux.HandleFunc("POST /api/{method}", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIRequest))
			if err != nil {
				writeJSONError(w, http.StatusRequestEntityTooLarge, "a server API request is at most 1 MiB")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(call(r.Context(), r.PathValue("method"), body))
		})
	}
	mux.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, nodes()) })
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, hub.Stats()) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"nodes": nodes(), "stats": hub.Stats()})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if token == "" {
		return mux
	}
	return requireToken(mux, token)
}

// maxAPIRequest bounds a server API request's body.
const maxAPIRequest = 1 << 20

// requireToken lets through the requests that carry "Authorization: Bearer
// token" and answers the others 401 with a JSON body. The tokens are
// compared as SHA-256 digests, in constant time: neither the time taken
// nor an early mismatch tells how much of a guess was right, or the
// token's length.
func requireToken(h http.Handler, token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimLeft(got, " ")))
		// The scheme is case-insensitive (RFC 9110 §11.1).
		ok := subtle.ConstantTimeCompare(sum[:], want[:]) == 1 && strings.EqualFold(scheme, "Bearer")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSONError(w, http.StatusUnauthorized, "this admin API needs Authorization: Bearer <admin.token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

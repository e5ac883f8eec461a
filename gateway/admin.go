package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/pushgrid/pushgrid/session"
)

// AdminHandler serves the admin API, meant for a loopback or private
// address: GET /api/nodes is the live cluster view (whatever nodes
// returns), GET /api/stats this node's figures, and /debug/pprof/ Go's
// profiler.
func AdminHandler(hub *session.Hub, nodes func() any) http.Handler {
	mux := http.NewServeMux()
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
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

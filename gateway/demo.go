package gateway

import (
	"embed"
	"net/http"
)

//go:embed static/index.html
var static embed.FS

// demoHandler serves the self-contained demo chat page at / and 404 for
// anything else.
func demoHandler() http.Handler {
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		panic(err) // embedded at build time; cannot fail
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
}

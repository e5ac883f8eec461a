package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// The static files: the demo chat page (/), the browser client
// (/pushgrid.js with its TypeScript declarations), the favicon, and the
// admin page (static/admin, on the admin listener). Embedded: a node
// serves them with no build step and nothing fetched at run time.
//
//go:embed static
var static embed.FS

// contentTypes are the static files' types, by extension.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".ts":   "text/plain; charset=utf-8", // a declaration file, read by editors and tsc
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// staticHandler serves dir's files of static by name ("/" is index.html,
// "/favicon.ico" the SVG favicon) and 404 for anything else, subdirectories
// included.
func staticHandler(dir string) http.Handler {
	files, err := fs.Sub(static, dir)
	if err != nil {
		panic(err) // embedded at build time; cannot fail
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		switch name {
		case "":
			name = "index.html"
		case "favicon.ico":
			name = "favicon.svg"
		}
		if strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			if name == "favicon.svg" {
				b, err = static.ReadFile("static/favicon.svg")
			}
			if err != nil {
				http.NotFound(w, r)
				return
			}
		}
		typ, ok := contentTypes[path.Ext(name)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", typ)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if path.Ext(name) == ".html" {
			w.Header().Set("Cache-Control", "no-cache")
		}
		if r.Method != http.MethodHead {
			w.Write(b)
		}
	})
}

// demoHandler serves the demo chat page at /, the browser client and the
// favicon, and 404 for anything else.
func demoHandler() http.Handler { return staticHandler("static") }

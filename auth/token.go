package auth

import (
	"net/http"
	"strings"
)

// TokenFrom finds a request's token in the sources of PROTOCOL.md §4, the
// first found winning: an Authorization header with the Bearer scheme
// (any case), the query parameter token, the cookie named cookie.
// Browsers cannot set headers on a WebSocket, hence the other two. Only
// the first Authorization value is looked at, and one with another scheme
// or no token counts as none; the query parameter is read as
// url.Values.Get reads it (pairs that do not parse are skipped). An empty
// value counts as none, so the next source is tried. It returns "" when no
// source holds a token.
func TokenFrom(r *http.Request, cookie string) string {
	if r == nil {
		return ""
	}
	if t := bearer(r.Header.Get("Authorization")); t != "" {
		return t
	}
	if r.URL != nil {
		if t := r.URL.Query().Get("token"); t != "" {
			return t
		}
	}
	if c, err := r.Cookie(cookie); err == nil {
		return c.Value
	}
	return ""
}

// bearer returns the token of an Authorization value of the Bearer
// scheme (RFC 6750: the scheme, then spaces, then the token).
func bearer(h string) string {
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

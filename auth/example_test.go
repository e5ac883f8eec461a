package auth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/pushgrid/pushgrid/auth"
)

// A token in the Authorization header beats one in the query, which beats
// the cookie: browsers, which cannot set headers on a WebSocket, use the
// other two.
func ExampleTokenFrom() {
	r := httptest.NewRequest(http.MethodGet, "/ws?token=from-query", nil)
	r.AddCookie(&http.Cookie{Name: "pushgrid_token", Value: "from-cookie"})
	fmt.Println(auth.TokenFrom(r, "pushgrid_token"))

	r.Header.Set("Authorization", "Bearer from-header")
	fmt.Println(auth.TokenFrom(r, "pushgrid_token"))

	r = httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.AddCookie(&http.Cookie{Name: "pushgrid_token", Value: "from-cookie"})
	fmt.Println(auth.TokenFrom(r, "pushgrid_token"))
	// Output:
	// from-query
	// from-header
	// from-cookie
}

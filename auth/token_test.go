package auth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// request builds what either of the gateway's parsers hands over: a URL
// with a path and a raw query, and a header map.
func request(authorization []string, rawQuery string, cookie []string) *http.Request {
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/ws", RawQuery: rawQuery}, Header: http.Header{}}
	if authorization != nil {
		r.Header["Authorization"] = authorization
	}
	if cookie != nil {
		r.Header["Cookie"] = cookie
	}
	return r
}

func TestTokenFrom(t *testing.T) {
	tests := []struct {
		name   string
		auth   []string
		query  string
		cookie []string
		want   string
	}{
		{"nothing", nil, "", nil, ""},
		{"header", []string{"Bearer H"}, "", nil, "H"},
		{"header lower case", []string{"bearer H"}, "", nil, "H"},
		{"header upper case", []string{"BEARER H"}, "", nil, "H"},
		{"header extra spaces", []string{"Bearer   H  "}, "", nil, "H"},
		{"query", nil, "user=x&token=Q", nil, "Q"},
		{"query escaped", nil, "token=a%2Bb%3D", nil, "a+b="},
		{"query first of two", nil, "token=Q1&token=Q2", nil, "Q1"},
		{"cookie", nil, "", []string{"pushgrid_token=C"}, "C"},
		{"cookie among others", nil, "", []string{"theme=dark; pushgrid_token=C; lang=en"}, "C"},
		{"cookie in a second header", nil, "", []string{"theme=dark", "pushgrid_token=C"}, "C"},
		{"cookie of another name", nil, "", []string{"token=C"}, ""},
		{"header beats query and cookie", []string{"Bearer H"}, "token=Q", []string{"pushgrid_token=C"}, "H"},
		{"query beats cookie", nil, "token=Q", []string{"pushgrid_token=C"}, "Q"},
		{"basic scheme is no token", []string{"Basic dXNlcjpwYXNz"}, "token=Q", nil, "Q"},
		{"bearer without token", []string{"Bearer"}, "token=Q", nil, "Q"},
		{"bearer with blank token", []string{"Bearer    "}, "", []string{"pushgrid_token=C"}, "C"},
		{"bearer glued to token", []string{"BearerH"}, "token=Q", nil, "Q"},
		{"bearer after a tab", []string{"Bearer\tH"}, "token=Q", nil, "Q"},
		{"only the first Authorization", []string{"Basic x", "Bearer H"}, "", nil, ""},
		{"first Authorization of two", []string{"Bearer H1", "Bearer H2"}, "", nil, "H1"},
		{"empty query token", nil, "token=", []string{"pushgrid_token=C"}, "C"},
		{"badly escaped query token", nil, "token=%zz&token=Q", nil, "Q"},
		{"semicolon query", nil, "a=1;token=Q", []string{"pushgrid_token=C"}, "C"},
		{"empty cookie", nil, "", []string{"pushgrid_token="}, ""},
		{"quoted cookie", nil, "", []string{`pushgrid_token="C"`}, "C"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TokenFrom(request(tc.auth, tc.query, tc.cookie), "pushgrid_token"); got != tc.want {
				t.Fatalf("TokenFrom = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTokenFromNoURL(t *testing.T) {
	if got := TokenFrom(nil, "c"); got != "" {
		t.Errorf("TokenFrom(nil) = %q", got)
	}
	r := &http.Request{Header: http.Header{"Cookie": {"c=C"}}}
	if got := TokenFrom(r, "c"); got != "C" {
		t.Errorf("TokenFrom without a URL = %q, want the cookie's C", got)
	}
}

// FuzzTokenFrom checks that no header, query or cookie makes TokenFrom
// panic, and that what it returns came from the source the precedence
// names. A newline in authorization or cookie separates values of
// several headers of that name.
func FuzzTokenFrom(f *testing.F) {
	f.Fuzz(func(t *testing.T, authorization, rawQuery, cookie string) {
		auths, cookies := strings.Split(authorization, "\n"), strings.Split(cookie, "\n")
		full := TokenFrom(request(auths, rawQuery, cookies), "pushgrid_token")
		noHeader := TokenFrom(request(nil, rawQuery, cookies), "pushgrid_token")
		queryOnly := TokenFrom(request(nil, rawQuery, nil), "pushgrid_token")
		cookieOnly := TokenFrom(request(nil, "", cookies), "pushgrid_token")

		// The first Authorization value, when it holds a Bearer token,
		// wins; else it is as if there were none.
		if full != noHeader {
			scheme, rest, _ := strings.Cut(auths[0], " ")
			if !strings.EqualFold(scheme, "Bearer") || full != strings.TrimSpace(rest) || full == "" {
				t.Fatalf("header %q gave %q", auths[0], full)
			}
		}
		// The query, when it holds a token, beats the cookie.
		if queryOnly != "" {
			if noHeader != queryOnly {
				t.Fatalf("query %q gave %q alone but %q with cookie %q", rawQuery, queryOnly, noHeader, cookie)
			}
			values, _ := url.ParseQuery(rawQuery)
			if !slices.Contains(values["token"], queryOnly) {
				t.Fatalf("query %q gave %q, not one of its token values", rawQuery, queryOnly)
			}
		} else if noHeader != cookieOnly {
			t.Fatalf("query %q, cookie %q: %q, want the cookie's %q", rawQuery, cookie, noHeader, cookieOnly)
		}
		if cookieOnly != "" && !strings.Contains(cookie, cookieOnly) {
			t.Fatalf("cookie header %q gave %q", cookie, cookieOnly)
		}
	})
}

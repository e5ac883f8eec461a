package gateway

import (
	"net/http"
	"strings"
	"testing"
)

func TestOriginPolicy(t *testing.T) {
	cases := []struct {
		origins []string
		host    string // the request's Host
		origin  string // its Origin header, "" for none
		ok      bool
	}{
		{nil, "push.example.com", "", true}, // not a browser
		{nil, "push.example.com", "https://push.example.com", true},
		{nil, "push.example.com:443", "https://push.example.com", true},
		{nil, "localhost:8000", "http://localhost:8000", true},
		{nil, "localhost:8000", "http://LOCALHOST:8000", true},
		{nil, "localhost:8000", "http://localhost:8001", false},
		{nil, "push.example.com", "https://evil.example", false},
		{nil, "push.example.com", "null", false},
		{nil, "push.example.com", "https://push.example.com.evil.example", false},
		{[]string{"https://app.example.com"}, "push.example.com", "https://app.example.com", true},
		{[]string{"https://app.example.com"}, "push.example.com", "https://app.example.com:443", true},
		{[]string{"https://app.example.com"}, "push.example.com", "http://app.example.com", false},
		{[]string{"https://*.example.com"}, "push.example.com", "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "push.example.com", "https://example.com", false},
		{[]string{"https://*.example.com"}, "push.example.com", "https://evilexample.com", false},
		{[]string{"*"}, "push.example.com", "https://anything.example", true},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.origins, ",")+" "+c.origin, func(t *testing.T) {
			p, err := parseOrigins(c.origins)
			if err != nil {
				t.Fatal(err)
			}
			r := &http.Request{Host: c.host, Header: http.Header{}}
			if c.origin != "" {
				r.Header.Set("Origin", c.origin)
			}
			if got := p.allows(r); got != c.ok {
				t.Fatalf("allows = %v, want %v", got, c.ok)
			}
		})
	}
	for _, bad := range []string{"example.com", "ftp://example.com", "https://example.com/path", "https://", "https://u@example.com"} {
		if _, err := parseOrigins([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func parse(s string) (*http.Request, error) {
	return readUpgradeRequest(bufio.NewReaderSize(strings.NewReader(s), readBufferSize))
}

func TestReadUpgradeRequest(t *testing.T) {
	long := strings.Repeat("c", 3*readBufferSize) // a line longer than the buffer
	r, err := parse("GET /ws?user=al%69ce&x=1 HTTP/1.1\r\nhost: example.com\r\nsec-websocket-key: k\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for:  10.0.0.2 \t\r\nCookie: " + long + "\r\nPragma: no-cache\r\n\r\nrest")
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.URL.Path != "/ws" || r.URL.RawQuery != "user=al%69ce&x=1" || r.Host != "example.com" ||
		r.Proto != "HTTP/1.1" || r.ProtoMinor != 1 || r.RequestURI != "/ws?user=al%69ce&x=1" {
		t.Fatalf("request line: %+v", r)
	}
	want := http.Header{
		"Sec-Websocket-Key": {"k"},
		"X-Forwarded-For":   {"10.0.0.1", "10.0.0.2"},
		"Cookie":            {long},
		"Pragma":            {"no-cache"},
		"Cache-Control":     {"no-cache"},
	}
	if !reflect.DeepEqual(r.Header, want) {
		t.Fatalf("headers %v, want %v", r.Header, want)
	}
	if user, err := queryValue(r.URL.RawQuery, "user"); user != "alice" || err != nil {
		t.Fatalf("user %q, %v", user, err)
	}
}

func TestReadUpgradeRequestRefuses(t *testing.T) {
	for name, req := range map[string]string{
		"no host":            "GET /ws HTTP/1.1\r\n\r\n",
		"two hosts":          "GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"body":               "GET /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"chunked":            "GET /ws HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"folded":             "GET /ws HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
		"space in name":      "GET /ws HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n",
		"space before colon": "GET /ws HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
		"control in value":   "GET /ws HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
		"no colon":           "GET /ws HTTP/1.1\r\nHost: a\r\nX\r\n\r\n",
		"bad version":        "GET /ws HTTP/2.0\r\nHost: a\r\n\r\n",
		"short line":         "GET /ws\r\nHost: a\r\n\r\n",
		"truncated":          "GET /ws HTTP/1.1\r\nHost: a\r\n",
		"space in host":      "GET /ws HTTP/1.1\r\nHost: a b\r\n\r\n",
		"slash in host":      "GET /ws HTTP/1.1\r\nHost: a/b\r\n\r\n",
	} {
		if r, err := parse(req); err == nil {
			t.Errorf("%s: accepted as %+v", name, r)
		}
	}
	huge := "GET /ws HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", maxRequestHead) + "\r\n\r\n"
	if _, err := parse(huge); !errors.Is(err, errHeadTooLarge) {
		t.Errorf("a %d-byte head: %v, want errHeadTooLarge", len(huge), err)
	}
}

func TestQueryValue(t *testing.T) {
	for _, c := range []struct{ q, want string }{
		{"user=bob", "bob"},
		{"a=1&user=bob&user=eve", "bob"},
		{"us%65r=bob", "bob"},
		{"%zz=1&user=bob", "bob"},
		{"user", ""},
		{"x=1", ""},
		{"user=a+b", "a b"},
	} {
		if got, err := queryValue(c.q, "user"); got != c.want || err != nil {
			t.Errorf("queryValue(%q) = %q, %v; want %q", c.q, got, err, c.want)
		}
	}
	if _, err := queryValue("user=%zz", "user"); err == nil {
		t.Error("a bad escape in the value was accepted")
	}
}

// validRequests are upgrade requests as browsers, proxies and odd but valid
// clients send them: the parser accepts each, and the fuzzer starts there.
var validRequests = []string{
	"GET /ws?user=alice HTTP/1.1\r\nHost: localhost:8000\r\nConnection: Upgrade\r\nPragma: no-cache\r\n" +
		"Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\n" +
		"Origin: http://localhost:8000\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nCookie: a=b; c=d\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: [::1]:8000\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\n" +
		"X-Real-IP: 203.0.113.7\r\nForwarded: for=203.0.113.7\r\nupgrade: websocket\r\nconnection: keep-alive, Upgrade\r\n\r\n",
	"GET /ws?a=%20&b HTTP/1.1\r\nHost: h\r\nX_Under: 1\r\nx-empty:\r\nX-Tab:\tv\t\r\nx-mixed-CASE-name: v\r\nContent-Length: 0\r\n\r\n",
	"GET /ws HTTP/1.0\nx-a: 1\nX-A: 2\nPragma: no-cache\n\n",
	"GET /ws?user=bob HTTP/1.1\nHost: h\nSec-WebSocket-Key: k\n\n",
}

func TestValidRequestsAccepted(t *testing.T) {
	for _, req := range validRequests {
		if _, err := parse(req); err != nil {
			t.Errorf("%q: %v", req, err)
		}
	}
}

// FuzzUpgradeRequest checks the light parser against net/http: whatever it
// accepts, http.ReadRequest accepts the same way.
func FuzzUpgradeRequest(f *testing.F) {
	for _, req := range validRequests {
		f.Add([]byte(req))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, err := readUpgradeRequest(bufio.NewReaderSize(bytes.NewReader(data), readBufferSize))
		if err != nil {
			return
		}
		theirs, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, data)
		}
		if ours.Method != theirs.Method || ours.RequestURI != theirs.RequestURI || ours.URL.String() != theirs.URL.String() ||
			ours.Proto != theirs.Proto || ours.Host != theirs.Host {
			t.Fatalf("request line differs from net/http's: %q", data)
		}
		if len(ours.Header) != 0 || len(theirs.Header) != 0 {
			if !reflect.DeepEqual(ours.Header, theirs.Header) {
				t.Fatalf("headers %v, net/http %v: %q", ours.Header, theirs.Header, data)
			}
		}
	})
}

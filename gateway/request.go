package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"unsafe"
)

// maxRequestHead bounds the request line and headers of an upgrade request
// (net/http allows 1 MiB; cookies make real heads a few KiB at most).
const maxRequestHead = 64 << 10

// maxHeaderHint caps the header map and value array sized in advance.
const maxHeaderHint = 32

var (
	errHeadTooLarge = errors.New("request head too large")
	errBadRequest   = errors.New("malformed request")
)

// readUpgradeRequest reads the head of a GET request on the light path. It
// is a lean http.ReadRequest for requests without a body: the head is read
// into one buffer that becomes the one string every header value is a part
// of, the header map and values are sized from the line count, and the
// names a WebSocket handshake carries are canonicalized without allocating.
// A request with a body, a folded header line or more than one Host is
// refused: none is a valid upgrade.
func readUpgradeRequest(br *bufio.Reader) (*http.Request, error) {
	head, lines, err := readHead(br)
	if err != nil {
		return nil, err
	}
	// head is never written again: its bytes may back a string, as
	// strings.Builder does.
	s := unsafe.String(unsafe.SliceData(head), len(head))

	line, s := cutLine(s)
	method, rest, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || uri == "" {
		return nil, fmt.Errorf("%w: bad request line", errBadRequest)
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return nil, fmt.Errorf("%w: bad protocol %q", errBadRequest, proto)
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: bad request URI", errBadRequest)
	}
	// Sized from the line count, but not by it alone: a head of 20,000
	// empty headers must not buy 20,000 slots up front.
	hint := min(lines, maxHeaderHint)
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     make(http.Header, hint),
		Body:       http.NoBody,
		RequestURI: uri,
	}
	values := make([]string, 0, hint) // one backing array for the values
	hosts := 0
	for {
		line, s = cutLine(s)
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: folded header line", errBadRequest)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return nil, fmt.Errorf("%w: bad header line", errBadRequest)
		}
		value = strings.Trim(value, " \t")
		if !validValue(value) {
			return nil, fmt.Errorf("%w: bad value of %s", errBadRequest, name)
		}
		key := canonicalKey(name)
		switch key {
		case "Host":
			if !validHost(value) {
				return nil, fmt.Errorf("%w: malformed Host header", errBadRequest)
			}
			hosts++
			r.Host = value
			continue // as net/http: the host is r.Host, not a header
		case "Content-Length":
			if value == "0" {
				break
			}
			fallthrough
		case "Transfer-Encoding":
			return nil, fmt.Errorf("%w: an upgrade request has no body", errBadRequest)
		}
		if old, dup := r.Header[key]; dup {
			r.Header[key] = append(old, value) // old is capped: values stays intact
			continue
		}
		values = append(values, value)
		r.Header[key] = values[len(values)-1 : len(values) : len(values)]
	}
	if hosts > 1 || (hosts == 0 && minor >= 1) {
		return nil, fmt.Errorf("%w: want one Host header, have %d", errBadRequest, hosts)
	}
	// As net/http, for handlers that look at Cache-Control only.
	if p := r.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" && r.Header["Cache-Control"] == nil {
		r.Header["Cache-Control"] = []string{"no-cache"}
	}
	return r, nil
}

// readHead reads up to and including the empty line that ends a request
// head, and counts its header lines.
func readHead(br *bufio.Reader) (head []byte, lines int, err error) {
	head = make([]byte, 0, 512)
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(head)+len(frag) > maxRequestHead {
			return nil, 0, errHeadTooLarge
		}
		head = append(head, frag...)
		switch {
		case err == bufio.ErrBufferFull:
			continue // a line longer than the buffer: read on
		case err != nil:
			return nil, 0, err
		}
		line := head[lineStart:]
		lineStart = len(head)
		lines++
		if lines > 1 && (string(line) == "\n" || string(line) == "\r\n") {
			return head, lines, nil
		}
	}
}

// cutLine splits s after its first line, without the line's CRLF or LF.
func cutLine(s string) (line, rest string) {
	line, rest, _ = strings.Cut(s, "\n")
	return strings.TrimSuffix(line, "\r"), rest
}

// isToken reports whether s is an RFC 9110 token: a method or field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validValue reports whether a field value has no control characters but
// tab (RFC 9110 5.5).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// handshakeHeaders are the names an upgrade request usually carries,
// canonical. canonicalKey returns these strings instead of allocating.
var handshakeHeaders = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
	"Connection", "Content-Length", "Cookie", "Forwarded", "Host", "Origin", "Pragma",
	"Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Protocol",
	"Sec-Websocket-Version", "Transfer-Encoding", "Upgrade", "User-Agent",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Real-Ip",
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey for a valid token,
// without an allocation for the handshake's usual names.
func canonicalKey(name string) string {
	for _, h := range handshakeHeaders {
		if len(h) == len(name) && strings.EqualFold(h, name) {
			return h
		}
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// queryValue returns the first value of key in a raw query, unescaped,
// without parsing the whole query into a map. A pair whose name cannot be
// unescaped is skipped, as url.ParseQuery does; a bad value of key is an
// error.
func queryValue(rawQuery, key string) (string, error) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != key {
			continue
		}
		return url.QueryUnescape(v)
	}
	return "", nil
}

// validHost reports whether h holds only bytes a Host header may hold, as
// net/http checks (golang.org/x/net/http/httpguts.ValidHostHeader): a
// hostname, an IP literal and a port, possibly percent-encoded.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

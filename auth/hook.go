package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/pushgrid/pushgrid/gateway"
	"github.com/pushgrid/pushgrid/session"
)

// keyErr is the log attribute that says why the hook could not decide.
const keyErr = "err"

// hookRequest is the payload of a request on <prefix>.auth (PROTOCOL.md
// §4). json.Marshal writes the fields in this order and map keys sorted.
type hookRequest struct {
	Remote  string            `json:"remote"`
	Path    string            `json:"path"`
	Query   map[string]string `json:"query"`
	Headers map[string]string `json:"headers"`
	Node    string            `json:"node"`
}

// newHookRequest describes r for the hook: the first value of each query
// parameter and of each header. The maps are never nil, so that a
// backend always finds objects, not null.
func newHookRequest(r *http.Request, remote netip.Addr, node string) hookRequest {
	req := hookRequest{
		Query:   map[string]string{},
		Headers: make(map[string]string, len(r.Header)+1),
		Node:    node,
	}
	if remote.IsValid() {
		req.Remote = remote.String()
	}
	if r.URL != nil {
		req.Path = r.URL.Path
		for k, vs := range r.URL.Query() {
			req.Query[k] = vs[0] // url.ParseQuery never makes an empty list
		}
	}
	for k, vs := range r.Header {
		// Both of the gateway's parsers canonicalize already; a request
		// built by hand may not have.
		if len(vs) > 0 {
			req.Headers[http.CanonicalHeaderKey(k)] = vs[0]
		}
	}
	// net/http and the gateway's light parser both move Host out of the
	// header map; a backend serving several sites needs it.
	if r.Host != "" {
		req.Headers["Host"] = r.Host
	}
	return req
}

// ask sends the hook a description of r and turns its reply into an
// identity or a refusal. A failure is logged, since the client is told
// only "auth backend unavailable".
func (a *Authenticator) ask(r *http.Request, remote netip.Addr) (session.Identity, error) {
	// Strings and maps of strings always marshal: invalid UTF-8 is
	// replaced, not refused.
	payload, _ := json.Marshal(newHookRequest(r, remote, a.node))
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.Timeout)
	defer cancel()
	reply, err := a.hook(ctx, payload)
	if err != nil {
		a.cfg.Logger.Warn("auth hook failed", keyErr, err)
		return session.Identity{}, unavailable()
	}
	id, refusal, why := decodeHookReply(reply)
	if why != nil {
		a.cfg.Logger.Warn("auth hook reply is neither an identity nor a refusal", keyErr, why)
	}
	if refusal != nil {
		return session.Identity{}, refusal
	}
	return id, nil
}

// unavailable is the refusal when the hook could not decide. A new one
// each time: the caller owns what it is given.
func unavailable() *gateway.HTTPError {
	return &gateway.HTTPError{Status: http.StatusServiceUnavailable, Msg: msgUnavailable}
}

// hookReply holds the keys of a reply that were present and not null;
// the others are nil.
type hookReply struct {
	user     *string
	channels json.RawMessage
	exp      *int64
	err      *string
	status   *int64
}

// decodeHookReply reads a hook's reply (PROTOCOL.md §4). It returns the
// identity a {"user","channels","exp"} reply grants, or the refusal to
// answer the client with: the status and text of an {"error","status"}
// reply, or 503 "auth backend unavailable" for any other reply, with why
// saying what was wrong with it (for the log, never the client). A key
// whose value is null counts as absent, as many encoders write missing
// optional fields that way; keys other than these five are ignored; a key
// given twice makes the reply ambiguous, hence refused.
func decodeHookReply(data []byte) (id session.Identity, refusal *gateway.HTTPError, why error) {
	rep, err := parseHookReply(data)
	if err != nil {
		return session.Identity{}, unavailable(), err
	}
	switch {
	case rep.user != nil && rep.err == nil && rep.status == nil:
		return rep.identity()
	case rep.err != nil && rep.status != nil && rep.user == nil && rep.channels == nil && rep.exp == nil:
		if *rep.status != http.StatusUnauthorized && *rep.status != http.StatusForbidden {
			return session.Identity{}, unavailable(), fmt.Errorf("status %d is not 401 or 403", *rep.status)
		}
		return session.Identity{}, &gateway.HTTPError{Status: int(*rep.status), Msg: *rep.err}, nil
	}
	return session.Identity{}, unavailable(), errors.New(`want {"user":...} or {"error":...,"status":401 or 403}`)
}

// identity checks the values of a reply of the accepting shape.
func (rep *hookReply) identity() (session.Identity, *gateway.HTTPError, error) {
	if !session.ClaimableUser(*rep.user) {
		return session.Identity{}, unavailable(), fmt.Errorf("user %.64q is not a valid user name", *rep.user)
	}
	channels, err := parseChannels(rep.channels)
	if err != nil {
		return session.Identity{}, unavailable(), err
	}
	id := session.Identity{User: *rep.user, Verified: true, Channels: channels}
	switch {
	case rep.exp == nil:
	case *rep.exp < 0:
		return session.Identity{}, unavailable(), fmt.Errorf("exp %d is before 1970", *rep.exp)
	case *rep.exp > 0: // 0 is how the protocol writes "no exp" elsewhere (refreshed)
		id.Expires = time.Unix(*rep.exp, 0)
	}
	return id, nil, nil
}

// parseHookReply reads data as one JSON object of the reply's keys, each
// of its type. It walks the object's keys itself, since json.Unmarshal
// keeps the last of two equal keys without a word, and is lenient with
// types (null into a string).
func parseHookReply(data []byte) (hookReply, error) {
	var rep hookReply
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return rep, errors.New("not a JSON object")
	}
	seen := make(map[string]bool, 5)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return rep, err
		}
		key, ok := t.(string)
		if !ok {
			return rep, errors.New("not a JSON object")
		}
		if seen[key] {
			return rep, fmt.Errorf("key %.64q appears twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return rep, err
		}
		if string(raw) == "null" {
			continue
		}
		switch key {
		case "user":
			rep.user, err = stringValue(raw)
		case "error":
			rep.err, err = stringValue(raw)
		case "channels":
			rep.channels = raw
		case "exp":
			rep.exp, err = intValue(raw)
		case "status":
			rep.status, err = intValue(raw)
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return rep, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return rep, errors.New("more data after the object")
	}
	return rep, nil
}

// stringValue decodes raw, which must be a JSON string.
func stringValue(raw json.RawMessage) (*string, error) {
	var s string
	if raw[0] != '"' {
		return nil, errors.New("not a string")
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// intValue decodes raw, which must be a JSON integer (no fraction or
// exponent) that fits in 64 bits.
func intValue(raw json.RawMessage) (*int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return nil, errors.New("not an integer")
	}
	return &n, nil
}

package session

import (
	"fmt"
	"strings"
	"time"
)

// Identity is who a connection is, decided before its upgrade. With
// auth.mode "none" only User is set (and may be empty: the first join's
// user field or anon-<conn> then names it); a token or an auth hook sets
// Verified, and then neither the query nor a join can change the user.
type Identity struct {
	User string
	// Verified says User came from a token or a backend: the client
	// cannot choose another.
	Verified bool
	// Channels are the channel patterns of the token's (or hook reply's)
	// channels claim: what join = "claim" rules check.
	Channels []Pattern
	// Expires is the token's exp; zero when it has none. The connection is
	// closed with 4003 at Expires + Config.Leeway unless a refresh came.
	Expires time.Time
}

// Pattern is a channel pattern (PROTOCOL.md §5): '.'-separated tokens
// where '*' stands for one token and a final '>' for one or more.
type Pattern struct {
	text   string
	tokens []string
}

// ParsePattern parses a channel pattern: 1 to 128 bytes of tokens of
// channel-name bytes, or '*', with '>' allowed as the last token.
func ParsePattern(s string) (Pattern, error) {
	if len(s) == 0 || len(s) > maxNameLen {
		return Pattern{}, fmt.Errorf("pattern %q: want 1 to %d bytes", s, maxNameLen)
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "*":
		case t == ">":
			if i != len(tokens)-1 {
				return Pattern{}, fmt.Errorf("pattern %q: '>' may only be the last token", s)
			}
		case !ValidToken(t):
			return Pattern{}, fmt.Errorf("pattern %q: token %q is not a name (A-Z a-z 0-9 _ - : @ =), '*' or a final '>'", s, t)
		}
	}
	return Pattern{text: s, tokens: tokens}, nil
}

// MustPattern is ParsePattern for patterns known to be valid; it panics
// on a bad one.
func MustPattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String is the pattern as written.
func (p Pattern) String() string { return p.text }

// MarshalText writes the pattern as written, so a configuration prints as
// it was read.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.text), nil }

// UnmarshalText parses a pattern.
func (p *Pattern) UnmarshalText(b []byte) error {
	q, err := ParsePattern(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Match reports whether channel, a valid channel name, matches p.
func (p Pattern) Match(channel string) bool {
	if len(p.tokens) == 0 {
		return false
	}
	for i, t := range p.tokens {
		if channel == "" {
			return false // the pattern has tokens left and the name has none
		}
		tok, rest, more := strings.Cut(channel, ".")
		switch t {
		case ">":
			return true // one or more tokens left
		case "*":
		default:
			if t != tok {
				return false
			}
		}
		if !more {
			return i == len(p.tokens)-1
		}
		channel = rest
	}
	return false // the name has tokens left
}

// Overlaps reports whether some channel name matches both p and q.
func (p Pattern) Overlaps(q Pattern) bool { return overlap(p.tokens, q.tokens) }

func overlap(a, b []string) bool {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] == ">" || b[0] == ">":
			return true // each side has at least one token to give
		case a[0] == "*" || b[0] == "*" || a[0] == b[0]:
			a, b = a[1:], b[1:]
		default:
			return false
		}
	}
	return len(a) == 0 && len(b) == 0
}

// matchAny reports whether a pattern of ps matches channel.
func matchAny(ps []Pattern, channel string) bool {
	for _, p := range ps {
		if p.Match(channel) {
			return true
		}
	}
	return false
}

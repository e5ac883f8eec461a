package session

import "strings"

// Name rules of PROTOCOL.md §3, in one place.

const (
	maxNameLen     = 128
	maxNodeNameLen = 64
)

// nameByte reports which bytes may appear in a channel or user name, besides
// the '.' that separates subject tokens.
var nameByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-:@=" {
		t[c] = true
	}
	return t
}()

// ValidChannel reports whether s is a valid channel name: 1 to 128 bytes of
// A-Z a-z 0-9 _ - : @ = and '.', where '.' separates non-empty subject tokens.
func ValidChannel(s string) bool { return validDotted(s, maxNameLen) }

// ValidUser reports whether s is a valid user name; the rules are those of
// channels.
func ValidUser(s string) bool { return validDotted(s, maxNameLen) }

// anonPrefix starts the user name of a connection that has none. Only the
// server gives such names: a client that could claim anon-<conn> would
// receive what is published to that connection's user.
const anonPrefix = "anon-"

// ClaimableUser reports whether a client may be user s: a valid user name
// that does not start with anon-.
func ClaimableUser(s string) bool { return ValidUser(s) && !strings.HasPrefix(s, anonPrefix) }

// ValidNode reports whether s is a valid node name: 1 to 64 bytes of
// A-Z a-z 0-9 _ -.
func ValidNode(s string) bool {
	if len(s) == 0 || len(s) > maxNodeNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !nameByte[c] || c == ':' || c == '@' || c == '=' {
			return false
		}
	}
	return true
}

// ValidToken reports whether s is one subject token made of name bytes (no
// '.'), as custom frame types and conn ids must be.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte[s[i]] {
			return false
		}
	}
	return true
}

func validDotted(s string, max int) bool {
	if len(s) == 0 || len(s) > max || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !nameByte[c] {
			return false
		}
	}
	return true
}

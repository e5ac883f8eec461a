package session

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	cases := []struct {
		name    string
		channel bool // valid as a channel (and user)
		node    bool // valid as a node
		token   bool // valid as one subject token
	}{
		{"lobby", true, true, true},
		{"A-Z_09", true, true, true},
		{"room:1@x=y", true, false, true},
		{"a.b.c", true, false, false},
		{"", false, false, false},
		{".a", false, false, false},
		{"a.", false, false, false},
		{"a..b", false, false, false},
		{"a*", false, false, false},
		{"a.>", false, false, false},
		{"a b", false, false, false},
		{"a\tb", false, false, false},
		{"é", false, false, false},
		{"a/b", false, false, false},
		{strings.Repeat("x", 64), true, true, true},
		{strings.Repeat("x", 65), true, false, true},
		{strings.Repeat("x", 128), true, false, true},
		{strings.Repeat("x", 129), false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ValidChannel(c.name); got != c.channel {
				t.Errorf("ValidChannel = %v", got)
			}
			if got := ValidUser(c.name); got != c.channel {
				t.Errorf("ValidUser = %v", got)
			}
			if got := ValidNode(c.name); got != c.node {
				t.Errorf("ValidNode = %v", got)
			}
			if got := ValidToken(c.name); got != c.token {
				t.Errorf("ValidToken = %v", got)
			}
		})
	}
}

// FuzzNames checks the validators against the rules written out plainly.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"lobby", "a.b", "a..b", ".", "a*", "@alice.inbox", "x=1:2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) >= 1 && len(s) <= 128
		for _, tok := range strings.Split(s, ".") {
			if tok == "" {
				want = false
			}
			for _, r := range tok {
				if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:@=", r) {
					want = false
				}
			}
		}
		if got := ValidChannel(s); got != want {
			t.Fatalf("ValidChannel(%q) = %v, want %v", s, got, want)
		}
		if ValidChannel(s) && strings.ContainsAny(s, "*> \t\r\n") {
			t.Fatalf("%q is valid but holds a wildcard or space", s)
		}
		if ValidToken(s) && strings.Contains(s, ".") {
			t.Fatalf("token %q holds a dot", s)
		}
		if ValidNode(s) && !ValidToken(s) {
			t.Fatalf("node %q is not a token", s)
		}
	})
}

package main

import "testing"

// TestInheritPort: a new process takes the old one's port only where its
// own configuration leaves the port to the OS on the same host.
func TestInheritPort(t *testing.T) {
	for _, c := range []struct{ want, was, got string }{
		{"127.0.0.1:0", "127.0.0.1:41234", "127.0.0.1:41234"},
		{"127.0.0.1:4222", "127.0.0.1:41234", "127.0.0.1:4222"}, // a port of its own
		{"10.0.0.1:0", "127.0.0.1:41234", "10.0.0.1:0"},         // another host
		{"127.0.0.1:0", "", "127.0.0.1:0"},                      // not restarted
		{"127.0.0.1:0", "garbage", "127.0.0.1:0"},
		{"", "127.0.0.1:41234", ""},
	} {
		if got := inheritPort(c.want, c.was); got != c.got {
			t.Errorf("inheritPort(%q, %q) = %q, want %q", c.want, c.was, got, c.got)
		}
	}
}

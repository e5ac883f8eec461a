package loopback

import "testing"

func TestOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4222":       true,
		"127.0.0.2:0":          true,
		"[::1]:6003":           true,
		"localhost:8000":       true,
		"LOCALHOST:8000":       true,
		"[::ffff:127.0.0.1]:1": true,
		":4222":                false,
		"0.0.0.0:4222":         false,
		"[::]:4222":            false,
		"10.0.0.2:6222":        false,
		"example.com:6222":     false,
		"127.0.0.1":            false, // no port: not an address a node listens on
		"":                     false,
	} {
		if got := Only(addr); got != want {
			t.Errorf("Only(%q) = %v, want %v", addr, got, want)
		}
	}
}

package socketio

import (
	"net/url"
	"testing"
)

// TestTakesUpgrade: the light path gets WebSocket requests to the
// server's path, and nothing else.
func TestTakesUpgrade(t *testing.T) {
	s := &Server{cfg: Config{Path: "/socket.io/"}}
	for target, want := range map[string]bool{
		"/socket.io/?EIO=4&transport=websocket":            true,
		"/socket.io/?transport=websocket&EIO=4&sid=n1.abc": true,
		"/socket.io/?EIO=4&transport=polling":              false,
		"/socket.io/?EIO=4&transport=websockets":           false,
		"/socket.io/?EIO=4&xtransport=websocket":           false,
		"/socket.io/x?EIO=4&transport=websocket":           false,
		"/socket.io?EIO=4&transport=websocket":             false,
		"/ws?transport=websocket":                          false,
		"/socket.io/":                                      false,
	} {
		if got := s.TakesUpgrade(target); got != want {
			t.Errorf("TakesUpgrade(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestQueryValue: the first value, as url.Values.Get of the parsed query
// gives it.
func TestQueryValue(t *testing.T) {
	for _, q := range []string{
		"EIO=4&transport=websocket", "transport=polling&transport=websocket", "EIO=%34&transport=web%73ocket",
		"a=1;b=2&EIO=4", "EIO=%zz&EIO=4", "%zz=1&sid=x", "sid", "sid=&sid=y", "", "&&EIO=4&", "EIO=4+4",
	} {
		parsed, _ := url.ParseQuery(q)
		for _, key := range []string{"EIO", "transport", "sid"} {
			if got, want := queryValue(q, key), parsed.Get(key); got != want {
				t.Errorf("queryValue(%q, %q) = %q, url.ParseQuery's %q", q, key, got, want)
			}
		}
	}
}

package main

// End-to-end tests of PROTOCOL.md §8 with the real socket.io-client, driven
// by testdata/socketio/client.mjs.

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// sioBasics is the scenario every transport must pass: the welcome event,
// join with an ack, chat as an event, what backends publish (JSON objects,
// text that is not JSON, other JSON) as events,
// emit("message", ...) as a request answered to its ack, a refusal to its
// ack, and leaving.
func sioBasics(url string, transports []string) sioScenario {
	opts := map[string]any{"auth": map[string]any{"user": "sio1"}}
	if transports != nil {
		opts["transports"] = transports
	}
	return sioScenario{URL: url, Options: opts, Steps: []sioStep{
		{Do: "connect"},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "welcome", "args": []any{map[string]any{"type": "welcome", "user": "sio1"}}}},
		{Do: "emit", Event: "join", Args: []any{"room"}, Ack: "j1"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j1", "args": []any{map[string]any{"type": "joined", "channel": "room"}}}},
		{Do: "emit", Event: "chat", Args: []any{"room", "hi"}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "chat", "args": []any{map[string]any{"channel": "room", "user": "sio1", "msg": "hi"}}}},
		{Do: "sync", Label: "publish"},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "news", "args": []any{map[string]any{"type": "news", "n": 1.0}}}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "message", "args": []any{"plain text"}}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "message", "args": []any{[]any{1.0, 2.0}}}},
		{Do: "emit", Event: "message", Args: []any{map[string]any{"type": "order", "item": "tea"}}, Ack: "o1"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "o1", "args": []any{map[string]any{"type": "reply", "msg": map[string]any{"ok": true, "item": "tea"}}}}},
		{Do: "emit", Event: "join", Args: []any{"@bob"}, Ack: "j2"},
		{Do: "expect", Match: map[string]any{"ev": "ack", "ack": "j2", "args": []any{map[string]any{"type": "error", "code": "forbidden"}}}},
		{Do: "emit", Event: "leave", Args: []any{"room"}},
		{Do: "expect", Match: map[string]any{"ev": "event", "name": "left", "args": []any{map[string]any{"type": "left", "channel": "room"}}}},
		{Do: "disconnect"},
	}}
}

func TestSocketIOTransports(t *testing.T) {
	for _, tc := range []struct {
		name       string
		transports []string
	}{
		{"polling", []string{"polling"}},
		{"websocket", []string{"websocket"}},
		{"upgrade", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startTestNode(t, "n1", nil)
			nc := natsConnect(t, n.nats)
			backendSubscribe(t, nc, "push.recv.order", func(m *nats.Msg) {
				_ = m.Respond([]byte(`{"ok":true,"item":"tea"}`))
			}, n)
			watcher := dial(t, n.ws, dialOpts{query: "?user=watcher"})
			watcher.join("room")

			c := startSIOClient(t, tc.name, sioBasics("http://"+strings.TrimPrefix(n.http, "http://"), tc.transports))
			c.next("sync", nil)
			// JSON objects to the channel; the rest to the user (the native
			// watcher in the channel takes JSON only).
			for subject, p := range map[string]string{"push.chan.room": `{"type":"news","n":1}`, "push.user.sio1": `plain text`} {
				if err := nc.Publish(subject, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Publish("push.user.sio1", []byte(`[1,2]`)); err != nil {
				t.Fatal(err)
			}
			c.release()
			if code := c.wait(15 * time.Second); code != 0 {
				t.Fatalf("driver exit %d", code)
			}
			watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "sio1" && f.str("msg") == "joined" })
			if f := watcher.next("chat"); f["msg"] != "hi" {
				t.Fatalf("watcher got %v", f)
			}
			watcher.nextWhere("control", func(f frame) bool { return f.str("user") == "sio1" && f.str("msg") == "left" })
			for _, l := range c.all() {
				if l.Ev == "connect_error" || (l.Ev == "event" && l.Name == "error") {
					t.Errorf("unexpected %s", l)
				}
			}
		})
	}
}

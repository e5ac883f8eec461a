package session

import (
	"time"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

// event publishes c's event name with one extra field, unless no backend
// listens: then the payload is not even built.
func (h *Hub) event(c *Conn, name, key, value string) {
	if h.backend.Listening(name) {
		h.publishEvent(c, name, key, value)
	}
}

// remoteEvent is event with the client's address, formatted only when
// someone listens.
func (h *Hub) remoteEvent(c *Conn, name string) {
	if h.backend.Listening(name) {
		h.publishEvent(c, name, "remote", c.remoteString())
	}
}

func (h *Hub) publishEvent(c *Conn, name, key, value string) {
	if err := h.backend.PublishEvent(name, c.eventPayload(key, value)); err != nil {
		h.log.Error("event failed", "event", name, logErr, err)
	}
}

// remoteString is the client address for events, "" when unknown.
func (c *Conn) remoteString() string {
	if !c.remote.IsValid() {
		return ""
	}
	return c.remote.String()
}

// eventPayload builds {"conn","user","node",<key>,"at"}.
func (c *Conn) eventPayload(key, value string) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"conn":`...)
	b = jsonstr.Append(b, c.id)
	b = jsonstr.Append(appendField(b, "user"), c.User())
	b = jsonstr.Append(appendField(b, "node"), c.hub.cfg.Node)
	b = jsonstr.Append(appendField(b, key), value)
	b = jsonstr.Append(appendField(b, "at"), time.Now().UTC().Format(time.RFC3339Nano))
	return append(b, '}')
}

package session

import (
	"context"
	"errors"
)

// Bus carries channel messages between nodes. The broker implements it over
// NATS.
type Bus interface {
	// Subscribe registers one more local member's interest in a channel.
	// When it returns, messages published afterwards on the same bus reach
	// Hub.DeliverChannel.
	Subscribe(channel string) error
	// Unsubscribe drops one local member's interest.
	Unsubscribe(channel string)
	// Publish sends payload to every member of channel on every node.
	Publish(channel string, payload []byte) error
}

// Backend carries what the gateway tells backends: events and custom client
// frames.
type Backend interface {
	// Listening reports whether anyone may want event name, so a hub can
	// skip building it; true when unsure.
	Listening(event string) bool
	// PublishEvent publishes payload on <prefix>.events.<name>, where name is
	// connect, disconnect, join.<channel> or leave.<channel>.
	PublishEvent(name string, payload []byte) error
	// Send publishes a custom client frame on <prefix>.recv.<typ> with the
	// sender's identity. With wantReply it waits, until ctx ends, for one
	// reply and returns its payload; it returns ErrNoHandler when nothing
	// listens and an error matching context.DeadlineExceeded on timeout.
	Send(ctx context.Context, typ, user, conn string, payload []byte, wantReply bool) ([]byte, error)
}

// isTimeout reports whether err means the backend did not answer in time.
func isTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

package socketio

import (
	"bytes"
	"errors"
	"net/http"
	"sync"

	"github.com/pushgrid/pushgrid/session"
)

// upgrade takes a polling session to a WebSocket, as Engine.IO v4 does it:
// the client probes the socket ("2probe", answered "3probe"), the server
// releases the pending poll with a noop, and the client's upgrade packet
// ("5") makes the socket the session's transport. Until then the session
// goes on polling, so nothing is lost or doubled while it moves.
func (es *engineSession) upgrade(w http.ResponseWriter, r *http.Request) {
	es.mu.Lock()
	already := es.ws != nil
	es.mu.Unlock()
	if already {
		errBadRequest.write(w)
		return
	}
	var ready sync.WaitGroup
	ready.Add(1)
	var t session.Transport
	upgraded := false // read loop only
	t, err := es.srv.edge.Upgrade(w, r, func(data []byte) {
		ready.Wait()
		if upgraded {
			es.receiveFrame(data)
			return
		}
		if err := es.probe(t, data, &upgraded); err != nil {
			es.srv.log.Debug("socket.io upgrade failed", "sid", es.sid, "err", err)
			_ = t.Close(session.Disconnect{Code: session.ClosePolicy, Reason: "bad upgrade"})
		}
	}, func(err error) {
		ready.Wait()
		if upgraded {
			es.end(socketClosed(err))
		}
		// A probe socket that closes before the upgrade leaves the session
		// polling.
	})
	ready.Done()
	if err != nil {
		return // the edge answered the request
	}
}

var errBadProbe = errors.New("socketio: not a probe or an upgrade")

// probe handles a frame of a socket that is not yet the session's.
func (es *engineSession) probe(t session.Transport, data []byte, upgraded *bool) error {
	switch {
	case bytes.Equal(data, []byte("2probe")):
		if _, err := t.TryWrite(wsFrame(nil, []byte("3probe"))); err != nil {
			return err
		}
		// The pending poll returns, so that the client can pause polling.
		return es.sendEngine([]byte{byte(EngineNoop)})
	case bytes.Equal(data, []byte{byte(EngineUpgrade)}):
		out := newWSOut(es, t)
		es.mu.Lock()
		if es.ended || es.ws != nil {
			es.mu.Unlock()
			return errEnded
		}
		es.ws = out
		es.recountLocked()
		queued := es.queue
		es.queue, es.queued = nil, 0
		if es.wake != nil {
			close(es.wake) // a poll still waiting answers with nothing more
			es.wake = nil
		}
		if es.room != nil {
			close(es.room)
			es.room = nil
		}
		es.mu.Unlock()
		*upgraded = true
		if len(queued) > 0 {
			return out.send(wsFrames(queued))
		}
		return nil
	}
	return errBadProbe
}

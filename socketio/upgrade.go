package socketio

import (
	"bytes"
	"errors"
	"net/http"
	"sync"

	"github.com/pushgrid/pushgrid/session"
)

// probeSocket is a WebSocket that asks to become a polling session's
// transport, as Engine.IO v4 does it: the client probes it ("2probe",
// answered "3probe"), the server releases the pending poll with a noop,
// and the client's upgrade packet ("5") makes the socket the session's
// transport. Until then the session goes on polling, so nothing is lost or
// doubled while it moves. The socket is on this node, or piped from
// another (see relay.go); in and closed come from its read loop, in order.
type probeSocket struct {
	es       *engineSession
	t        session.Transport
	upgraded bool // read loop only
}

func (p *probeSocket) in(data []byte) {
	if p.upgraded {
		p.es.receiveFrame(data)
		return
	}
	if err := p.es.probe(p.t, data, &p.upgraded); err != nil {
		p.es.srv.log.Debug("socket.io upgrade failed", "sid", p.es.sid, "err", err)
		_ = p.t.Close(session.Disconnect{Code: session.ClosePolicy, Reason: "bad upgrade"})
	}
}

func (p *probeSocket) closed(err error) {
	if p.upgraded {
		p.es.end(socketClosed(err))
	}
	// A probe socket that closes before the upgrade leaves the session
	// polling.
}

// upgrade takes a WebSocket on this node for a session of this node.
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
	p := &probeSocket{es: es}
	t, err := es.srv.edge.Upgrade(w, r, nil, func(data []byte) {
		ready.Wait()
		p.in(data)
	}, func(err error) {
		ready.Wait()
		p.closed(err)
	})
	p.t = t
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
			close(es.wake) // a poll still waiting answers with a noop
			es.wake = nil
		}
		if es.room != nil {
			close(es.room)
			es.room = nil
		}
		// What waited for a poll goes first, before es.mu lets the hub's
		// next write through to the socket.
		var err error
		if len(queued) > 0 {
			err = out.send(wsFrames(queued))
		}
		es.mu.Unlock()
		*upgraded = true
		return err
	}
	return errBadProbe
}

package socketio

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgrid/pushgrid/session"
)

// Any node serves any session. A session lives on the node that opened it
// (its owner, named in its id); a request for it that reaches another node
// is relayed to the owner:
//
//   - a poll or a post is a request to the owner, which serves it as its
//     own and returns the answer, which the node the client reached writes;
//   - a WebSocket upgrade stays on the node it reached, which pipes the
//     socket to the owner: the client's frames go to the owner in order,
//     and the owner's frames come back in order. A session does not move
//     between nodes: there is no moment at which two nodes, or none, would
//     deliver its channels' messages, so nothing is lost or doubled.
//
// A session whose owner is gone gets Engine.IO's "Session ID unknown", so
// the client starts a new one.

// Relay carries messages to other nodes (the broker implements it).
type Relay interface {
	// RelayRequest sends data to node and waits, until ctx ends, for its
	// answer; an error when no such node answers.
	RelayRequest(ctx context.Context, node string, data []byte) ([]byte, error)
	// RelayPublish sends data to node; messages to one node arrive in
	// order.
	RelayPublish(node string, data []byte) error
}

// Relay operations, the first line of every relayed message.
const (
	opPoll   = "poll"   // request: sid, raw query → the poll's answer
	opPost   = "post"   // request: sid, raw query, body → the post's answer
	opPipe   = "pipe"   // request: sid, pipe → "ok", or errSessionUnknown's
	opIn     = "in"     // pipe, frame: a frame from the client, to the owner
	opGone   = "gone"   // pipe, why: the client's socket ended, to the owner
	opOut    = "out"    // pipe, frames: frames for the client, from the owner
	opClose  = "close"  // pipe, code reason: close the client's socket, from the owner
	opCancel = "cancel" // sid: the client of a relayed poll went away, to the owner
)

// envelope joins a relayed message's fields: an operation and its
// arguments, one a line (none holds a newline), then the body.
func envelope(op string, args []string, body []byte) []byte {
	b := append([]byte(op), '\n')
	for _, a := range args {
		b = append(append(b, a...), '\n')
	}
	return append(b, body...)
}

// unwrap splits a relayed message into its operation, n arguments and the
// body.
func unwrap(data []byte, n int) (op string, args []string, body []byte, ok bool) {
	line, rest, found := bytes.Cut(data, []byte{'\n'})
	if !found {
		return "", nil, nil, false
	}
	op = string(line)
	for i := 0; i < n; i++ {
		if line, rest, found = bytes.Cut(rest, []byte{'\n'}); !found {
			return "", nil, nil, false
		}
		args = append(args, string(line))
	}
	return op, args, rest, true
}

// argsOf is how many arguments each operation carries.
var argsOf = map[string]int{opPoll: 2, opPost: 2, opPipe: 2, opIn: 1, opGone: 1, opOut: 1, opClose: 1, opCancel: 1}

// HandleRelay handles a message relayed from another node; reply is nil
// for messages that want no answer. It does not wait: polls, which do,
// run on goroutines of their own.
func (s *Server) HandleRelay(data []byte, reply func([]byte) error) {
	op, _, _, ok := unwrap(data, 0)
	n, known := argsOf[op]
	if ok && known {
		_, args, body, ok2 := unwrap(data, n)
		ok = ok2
		if ok {
			s.relayed(op, args, body, reply)
			return
		}
	}
	s.log.Warn("a relayed message that is not one", "head", string(data[:min(len(data), 32)]))
	if reply != nil {
		_ = reply(answer(errBadRequest.status, "application/json", nil))
	}
}

func (s *Server) relayed(op string, args []string, body []byte, reply func([]byte) error) {
	switch op {
	case opPoll, opPost:
		if reply == nil {
			return
		}
		body = bytes.Clone(body)
		go func() { _ = reply(s.serveRelayed(op, args[0], args[1], body)) }()
	case opCancel:
		if es := s.session(args[0]); es != nil {
			es.cancelRelayedPoll()
		}
	case opPipe:
		if reply != nil {
			_ = reply(s.openPipe(args[0], args[1]))
		}
	case opIn, opGone:
		s.pipesMu.Lock()
		p := s.pipes[args[0]]
		if op == opGone {
			delete(s.pipes, args[0])
		}
		s.pipesMu.Unlock()
		if p == nil {
			return
		}
		if op == opIn {
			p.in(bytes.Clone(body))
		} else {
			p.closed(errors.New(string(body)))
		}
	case opOut, opClose:
		s.pipesMu.Lock()
		end := s.ends[args[0]]
		s.pipesMu.Unlock()
		if end == nil {
			return
		}
		if op == opOut {
			end.write(body)
		} else {
			end.close(body)
		}
	}
}

// relayGrace is how much longer than relayPoll the node a client reached
// waits for the owner's answer before it takes the owner for gone.
const relayGrace = 2 * time.Second

// relayPoll is the longest a relayed poll waits on the owner for packets
// before it answers with a noop. A poll is answered when the owner dies
// only if the owner answers it: a relayed one in flight hears nothing, so
// it is kept short, and a client whose owner died learns it within
// relayPoll + relayGrace rather than at its ping timeout.
func (s *Server) relayPoll() time.Duration { return min(s.cfg.PingInterval, 3*time.Second) }

// answer is a relayed poll's or post's answer: status, content type, body.
func answer(status int, contentType string, body []byte) []byte {
	return envelope(strconv.Itoa(status), []string{contentType}, body)
}

// recorder is the http.ResponseWriter of a relayed request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// serveRelayed serves a poll or a post relayed from another node, as its
// own.
func (s *Server) serveRelayed(op, sid, rawQuery string, body []byte) []byte {
	rec := &recorder{header: http.Header{}}
	es := s.session(sid)
	if es == nil {
		errSessionUnknown.write(rec)
	} else {
		method := http.MethodGet
		if op == opPost {
			method = http.MethodPost
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.relayPoll())
		defer cancel()
		r, _ := http.NewRequestWithContext(ctx, method, "/?"+rawQuery, bytes.NewReader(body))
		if op == opPoll {
			// The node the client reached cancels it if the client goes:
			// the packets then stay queued for its next poll.
			es.mu.Lock()
			es.relayedPoll = cancel
			es.mu.Unlock()
			es.poll(rec, r)
			es.mu.Lock()
			es.relayedPoll = nil
			es.mu.Unlock()
		} else {
			es.post(rec, r)
		}
	}
	return answer(max(rec.status, http.StatusOK), rec.header.Get("Content-Type"), rec.body.Bytes())
}

// relay serves a request for a session of another node through that node.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, sid, owner, transport string) {
	if s.relayTo == nil {
		errSessionUnknown.write(w)
		return
	}
	if transport == "websocket" {
		s.pipe(w, r, sid, owner)
		return
	}
	op := opPoll
	var body []byte
	if r.Method == http.MethodPost {
		op = opPost
		var err error
		if body, err = readBody(r, s.cfg.MaxPayload); err != nil {
			errBadRequest.write(w)
			return
		}
	}
	// The owner answers a relayed poll within relayPoll, with a noop if
	// nothing came: an owner that says nothing for longer is gone.
	ctx, cancel := context.WithTimeout(r.Context(), s.relayPoll()+relayGrace)
	defer cancel()
	data, err := s.relayTo.RelayRequest(ctx, owner, envelope(op, []string{sid, r.URL.RawQuery}, body))
	if err != nil && op == opPoll && r.Context().Err() != nil {
		// The client went away: the owner's poll must not take packets
		// nobody will read.
		_ = s.relayTo.RelayPublish(owner, envelope(opCancel, []string{sid}, nil))
		return
	}
	if err != nil {
		s.log.Debug("relay failed", "sid", sid, "owner", owner, "err", err)
		errSessionUnknown.write(w) // the owner is gone: the client starts over
		return
	}
	status, args, payload, ok := unwrap(data, 1)
	code, err := strconv.Atoi(status)
	if !ok || err != nil {
		errBadRequest.write(w)
		return
	}
	if args[0] != "" {
		w.Header().Set("Content-Type", args[0])
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(payload)
}

// pipe takes a WebSocket for a session of another node and pipes it to
// the owner.
func (s *Server) pipe(w http.ResponseWriter, r *http.Request, sid, owner string) {
	id := s.cfg.Node + "." + rand.Text()[:16]
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ok, err := s.relayTo.RelayRequest(ctx, owner, envelope(opPipe, []string{sid, id}, nil))
	if err != nil || string(ok) != "ok" {
		errSessionUnknown.write(w)
		return
	}
	end := &pipeEnd{srv: s, id: id, owner: owner}
	s.pipesMu.Lock()
	s.ends[id] = end
	s.pipesMu.Unlock()
	var ready sync.WaitGroup
	ready.Add(1)
	limit := newPipeLimit(s.hub.Config())
	flooded := false // read goroutine only
	t, err := s.edge.Upgrade(w, r, nil, func(data []byte) {
		ready.Wait()
		if flooded {
			return
		}
		if !limit.take(time.Now()) {
			flooded = true
			go end.out.Load().close(session.DisconnectRateLimit)
			return
		}
		_ = s.relayTo.RelayPublish(owner, envelope(opIn, []string{id}, data))
	}, func(err error) {
		ready.Wait()
		s.pipesMu.Lock()
		delete(s.ends, id)
		s.pipesMu.Unlock()
		why := "closed"
		if err != nil {
			why = err.Error()
		}
		_ = s.relayTo.RelayPublish(owner, envelope(opGone, []string{id}, []byte(why)))
	})
	if err != nil {
		ready.Done()
		s.pipesMu.Lock()
		delete(s.ends, id)
		s.pipesMu.Unlock()
		_ = s.relayTo.RelayPublish(owner, envelope(opGone, []string{id}, []byte("upgrade failed")))
		return
	}
	out := newWSOut(nil, t)
	out.fail = func(error) { out.close(session.Disconnect{Code: session.CloseNormal, Reason: "write failed"}) }
	end.out.Store(out)
	ready.Done()
}

// pipeLimit bounds the frames a piped socket relays to its owner, at
// twice the session's rate and burst plus the strikes after which the
// owner would close it: a client the owner would keep is never cut, and
// one that floods is closed here, as the owner would close it (1008),
// before its frames fill the owner's relay subscription, which the
// relayed requests of every other session share.
type pipeLimit struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newPipeLimit(cfg session.Config) *pipeLimit {
	burst := 2*float64(cfg.Burst) + 16
	return &pipeLimit{rate: 2 * cfg.Rate, burst: burst, tokens: burst}
}

// take spends a token, false when none is left.
func (l *pipeLimit) take(now time.Time) bool {
	if !l.last.IsZero() {
		l.tokens = min(l.tokens+now.Sub(l.last).Seconds()*l.rate, l.burst)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// openPipe, on the owner, takes a socket piped from another node as a
// probe socket of session sid.
func (s *Server) openPipe(sid, id string) []byte {
	es := s.session(sid)
	node := OwnerOf(id)
	if es == nil || node == "" {
		return []byte("unknown")
	}
	p := &probeSocket{es: es, t: &pipeTransport{srv: s, id: id, node: node}}
	s.pipesMu.Lock()
	s.pipes[id] = p
	s.pipesMu.Unlock()
	return []byte("ok")
}

// pipeTransport is, on the owner, the socket of a session that is on
// another node: what is written to it is relayed there, in order.
type pipeTransport struct {
	srv  *Server
	id   string
	node string
}

func (t *pipeTransport) TryWrite(p []byte) (int, error) {
	if err := t.srv.relayTo.RelayPublish(t.node, envelope(opOut, []string{t.id}, p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *pipeTransport) Write(bufs [][]byte) error {
	for _, b := range bufs {
		if _, err := t.TryWrite(b); err != nil {
			return err
		}
	}
	return nil
}

func (t *pipeTransport) Close(d session.Disconnect) error {
	t.srv.pipesMu.Lock()
	delete(t.srv.pipes, t.id)
	t.srv.pipesMu.Unlock()
	return t.srv.relayTo.RelayPublish(t.node, envelope(opClose, []string{t.id}, []byte(fmt.Sprintf("%d %s", d.Code, d.Reason))))
}

// pipeEnd is, on the node a client's socket reached, the socket of a
// session another node owns.
type pipeEnd struct {
	srv   *Server
	id    string
	owner string
	out   atomic.Pointer[wsOut] // set once the socket is upgraded
}

func (e *pipeEnd) write(frames []byte) {
	out := e.out.Load()
	if out == nil {
		return
	}
	if err := out.send(bytes.Clone(frames)); err != nil {
		e.srv.log.Debug("pipe write failed", "pipe", e.id, "err", err)
	}
}

func (e *pipeEnd) close(body []byte) {
	out := e.out.Load()
	if out == nil {
		return
	}
	code, reason, _ := bytes.Cut(body, []byte{' '})
	n, _ := strconv.Atoi(string(code))
	out.close(session.Disconnect{Code: session.CloseCode(n), Reason: string(reason)})
}

// readBody reads a request body of at most max bytes.
func readBody(r *http.Request, max int) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(body) > max {
		return nil, errors.New("socketio: body over socketio.max_payload")
	}
	return body, nil
}

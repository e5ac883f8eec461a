package session

import (
	"runtime"
	"sync"
)

// Message is one client frame whose buffer the caller lends until Close;
// *gws.Message is one.
type Message interface {
	Bytes() []byte
	Close() error
}

// binaryFrame stands in the inbox for a binary frame, so that the close it
// earns follows the answers to the frames that came before it.
type binaryFrame struct{}

func (binaryFrame) Bytes() []byte { return nil }
func (binaryFrame) Close() error  { return nil }

// pingFrame stands in the inbox for a WebSocket ping: it is answered in
// order with the other frames and counts against the rate limit like them.
type pingFrame struct{ payload []byte }

func (p pingFrame) Bytes() []byte { return p.payload }
func (pingFrame) Close() error    { return nil }

// pongFrame stands in the inbox for a WebSocket pong from the client: it
// needs no answer, but counts against the rate limit like any frame.
type pongFrame struct{}

func (pongFrame) Bytes() []byte { return nil }
func (pongFrame) Close() error  { return nil }

// maxInbox is how many frames of one connection may wait to be handled
// before its reader waits: a client cannot queue work faster than the
// node does it.
const maxInbox = 64

// inbox runs a connection's frames in arrival order on a goroutine of its
// own, started when a frame arrives and gone when none is left. The read
// loop only queues, so its stack stays small on every idle connection;
// the deep work (JSON, NATS, handlers) runs on a short-lived stack.
type inbox struct {
	mu      sync.Mutex
	room    chan struct{} // guarded by mu; made while the reader waits, closed when there is room
	frames  []Message     // guarded by mu
	closed  bool          // guarded by mu: the read loop ended
	reason  error         // guarded by mu: why
	running bool          // guarded by mu: a worker is handling frames
}

// Enqueue hands m, read from c, to c's worker; the hub closes m once it is
// handled. It blocks while maxInbox frames are waiting.
func (h *Hub) Enqueue(c *Conn, m Message) {
	in := &c.in
	in.mu.Lock()
	for len(in.frames) >= maxInbox && !in.closed {
		if in.room == nil {
			in.room = make(chan struct{})
		}
		room := in.room
		in.mu.Unlock()
		<-room
		in.mu.Lock()
	}
	in.frames = append(in.frames, m)
	h.startWorker(c)
	in.mu.Unlock()
}

// enqueueServer hands a server op to c's worker without waiting: a
// connection whose frames wait (a join during a failover waits up to 10 s)
// must not hold up the server API, which answers for every node at once.
// Past maxInbox+maxServerOps waiting frames the op is dropped: false.
func (h *Hub) enqueueServer(c *Conn, m Message) bool {
	in := &c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed || len(in.frames) >= maxInbox+maxServerOps {
		return false
	}
	in.frames = append(in.frames, m)
	h.startWorker(c)
	return true
}

// maxServerOps bounds the server ops waiting for a connection beyond its
// own frames.
const maxServerOps = 1024

// ReadEnded tells the hub c's read loop ended (the client closed, or its
// socket failed, for reason): once the frames already queued are handled, c
// disconnects: it leaves its channels, is forgotten, and the Handler's
// OnDisconnect runs.
func (h *Hub) ReadEnded(c *Conn, reason error) {
	in := &c.in
	in.mu.Lock()
	in.closed, in.reason = true, reason
	in.wake()
	h.startWorker(c)
	in.mu.Unlock()
}

// startWorker starts c's worker unless one runs; callers hold c.in.mu. An
// idle pool worker takes it if there is one: its stack has already grown
// to what frame handling needs, where a new goroutine would grow and copy
// its stack on every burst of frames. If the pool is busy, a goroutine of
// its own takes it.
func (h *Hub) startWorker(c *Conn) {
	if c.in.running {
		return
	}
	c.in.running = true
	h.poolOnce.Do(h.startPool)
	select {
	case h.pool <- c:
	default:
		go h.work(c)
	}
}

// poolSize is how many long-lived workers a hub keeps, per CPU.
const poolSize = 4

func (h *Hub) startPool() {
	n := poolSize * runtime.GOMAXPROCS(0)
	h.workers.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer h.workers.Done()
			for {
				select {
				case c := <-h.pool:
					h.work(c)
				case <-h.closed:
					return
				}
			}
		}()
	}
}

// stopWorkers stops the hub's worker pool, once every connection is gone.
// It is safe to call more than once.
func (h *Hub) stopWorkers() {
	h.stopOnce.Do(func() { close(h.closed) })
	h.workers.Wait()
}

func (h *Hub) work(c *Conn) {
	in := &c.in
	for {
		in.mu.Lock()
		if len(in.frames) == 0 {
			closed, reason := in.closed, in.reason
			in.running = false
			in.frames = nil // an idle connection keeps no buffer
			in.mu.Unlock()
			if closed {
				h.disconnect(c, reason)
			}
			return
		}
		m := in.frames[0]
		in.frames[0] = nil
		in.frames = in.frames[1:]
		in.wake()
		in.mu.Unlock()

		switch m := m.(type) {
		case binaryFrame:
			c.Close(DisconnectBinary)
		case pingFrame:
			h.receivePing(c, m.payload)
		case pongFrame:
			h.receivePong(c)
		case serverOp:
			h.serve(c, m)
		default:
			h.Receive(c, m.Bytes())
		}
		_ = m.Close()
	}
}

// wake lets a waiting reader go on; callers hold in.mu.
func (in *inbox) wake() {
	if in.room != nil {
		close(in.room)
		in.room = nil
	}
}

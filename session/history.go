package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// History channels (PROTOCOL.md §6): a channel whose rule has history > 0
// is stored by the cluster, and its members get what the store
// republishes (DeliverStored), each JSON object with "seq" spliced in.
// A join asks the store for the channel's last seq, and with "since" or
// "history" replays what the store kept, then live messages, with no gap
// and no duplicate: the joiner is a member from the start, so nothing
// published after it asked is missed, but the channel holds its batches
// back (channel.recovering) until the replay has gone out, and then hands
// over only the frames past the replay.

// Stored is one stored message of a history channel.
type Stored struct {
	Seq  uint64
	Data []byte
}

// HistoryStore is the store of history channels; package history's Store
// implements it.
type HistoryStore interface {
	// Last is the seq of the channel's newest stored message, 0 for none.
	Last(ctx context.Context, channel string) (uint64, error)
	// Since returns the stored messages from seq from to seq upTo (0: no
	// bound), oldest first, at most limit (0: no limit). A replica that
	// lags the leader may answer: it may lack the oldest.
	Since(ctx context.Context, channel string, from, upTo uint64, limit int) ([]Stored, error)
	// Tail returns the channel's last n stored messages up to seq upTo,
	// oldest first, reading about n of them.
	Tail(ctx context.Context, channel string, n int, upTo uint64) ([]Stored, error)
	// Has reports whether message seq of the channel is stored, as the
	// leader has it.
	Has(ctx context.Context, channel string, seq uint64) (bool, error)
	// Publish stores payload in the channel's history; a retry with the
	// same id is stored once.
	Publish(ctx context.Context, channel string, payload []byte, id string) (uint64, error)
}

// storeWait bounds a join's wait for the store: a stream whose leader died
// elects another within 4 to 9 s; past this the join fails "unavailable".
const storeWait = 10 * time.Second

// joinStored answers a join of c to ch, a history channel c was just made
// a member of with its batches held back (channel.hold): joined with the
// channel's last seq (and recovered, for since), the replay, then the
// frames held meanwhile that come after it. On error c leaves ch again.
func (h *Hub) joinStored(c *Conn, ch *channel, f *Frame) *Error {
	ctx, cancel := context.WithTimeout(context.Background(), storeWait)
	defer cancel()
	last, err := h.store.Last(ctx, ch.name)
	if err != nil {
		return h.storeError(ch.name, err)
	}
	var replay []Stored
	recovered := false
	switch f.Recover {
	case RecoverSince:
		if last == 0 {
			break // nothing stored (Since would read with no bound)
		}
		msgs, err := h.store.Since(ctx, ch.name, f.Since, last, 0)
		if err != nil {
			return h.storeError(ch.name, err)
		}
		recovered = len(msgs) > 0 && msgs[0].Seq == f.Since
		if !recovered && f.Since > 0 && f.Since <= last {
			// The replica that answered may be one still catching up:
			// ask the leader, and while it has message since, read again.
			if recovered, err = h.store.Has(ctx, ch.name, f.Since); err != nil {
				return h.storeError(ch.name, err)
			}
			for recovered && (len(msgs) == 0 || msgs[0].Seq != f.Since) {
				select {
				case <-ctx.Done():
					return h.storeError(ch.name, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
				if msgs, err = h.store.Since(ctx, ch.name, f.Since, last, 0); err != nil {
					return h.storeError(ch.name, err)
				}
			}
		}
		for len(msgs) > 0 && msgs[0].Seq <= f.Since {
			msgs = msgs[1:]
		}
		replay = msgs
	case RecoverHistory:
		if k := min(f.History, uint64(ch.rule.History)); k > 0 && last > 0 {
			msgs, err := h.store.Tail(ctx, ch.name, int(k), last)
			if err != nil {
				return h.storeError(ch.name, err)
			}
			replay = msgs
		}
	}
	if f.Recover == RecoverSince {
		if recovered {
			h.stats.recovered.Add(1)
		} else {
			h.stats.unrecovered.Add(1)
		}
	}
	answer := encodeJoinedSeq(ch.name, last, f.Recover == RecoverSince, recovered, f.ID)
	frames := appendFrame(nil, opText, answer)
	n := 1
	// In parts of a quarter of the queue's bounds, each when the client
	// has room for it: a replay may be longer than the bounds.
	maxFrames, maxBytes := max(h.cfg.QueueFrames/batchShare, 1), h.cfg.QueueBytes/batchShare
	paced, done := context.WithTimeout(context.Background(), replayWait)
	defer done()
	for _, m := range replay {
		frame := spliceSeq(m.Data, m.Seq)
		if n == maxFrames || len(frames)+len(frame) > maxBytes {
			if !c.out.awaitRoom(paced, n, len(frames)) {
				c.Close(DisconnectSlowConsumer)
				return nil // gone, or not reading: c leaves as it closes
			}
			c.out.send(frames, n)
			frames, n = nil, 0
		}
		frames = appendFrame(frames, opText, frame)
		n++
	}
	if !c.out.awaitRoom(paced, n, len(frames)) {
		c.Close(DisconnectSlowConsumer)
		return nil
	}
	for {
		gapTo := ch.release(c, frames, n, last)
		if gapTo == 0 {
			return nil
		}
		// The node's feed of the channel began after the replay's end:
		// what lies between comes from the store (Since reads up to
		// gapTo, which the leader has, waiting out a lagging replica).
		// Should the store fail now, after a long replay's first parts
		// went out, the join still fails as any does: the error, and c
		// leaves the channel.
		fill, cancelFill := context.WithTimeout(context.Background(), storeWait)
		msgs, err := h.store.Since(fill, ch.name, last+1, gapTo, 0)
		cancelFill()
		if err != nil {
			return h.storeError(ch.name, err)
		}
		for _, m := range msgs {
			frames = appendFrame(frames, opText, spliceSeq(m.Data, m.Seq))
			n++
		}
		last = gapTo
	}
}

// replayWait bounds how long a replay waits for its client to read: one
// that reads nothing for this long is a slow consumer (4001).
const replayWait = 30 * time.Second

// storeError is the client's error for a store that failed a join.
func (h *Hub) storeError(channel string, err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStoreUnavailable) {
		return errorf(CodeUnavailable, "the history of %q is failing over; retry later", channel)
	}
	h.log.Error("history store", logChannel, channel, logErr, err)
	return errorf(CodeUnavailable, "the history of %q cannot be read now; retry later", channel)
}

// ErrStoreUnavailable is a store that did not answer in time: a stream
// whose leader is being elected, or JetStream down.
var ErrStoreUnavailable = errors.New("history: the store is unavailable")

// encodeJoinedSeq builds a history channel's joined answer:
// {"type":"joined","channel":C,"seq":LAST[,"recovered":R][,"id":ID]}.
func encodeJoinedSeq(channel string, last uint64, withRecovered, recovered bool, id json.RawMessage) []byte {
	b := encodeAnswer("joined", channel, nil)
	b = b[:len(b)-1]
	b = strconv.AppendUint(appendField(b, "seq"), last, 10)
	if withRecovered {
		b = strconv.AppendBool(appendField(b, "recovered"), recovered)
	}
	b = appendID(b, id)
	return append(b, '}')
}

// encodeJoinedRecovered is the joined answer to since or history on a
// channel without history: {"type":"joined","channel":C,"recovered":false}.
func encodeJoinedRecovered(channel string, id json.RawMessage) []byte {
	b := encodeAnswer("joined", channel, nil)
	b = append(b[:len(b)-1], `,"recovered":false`...)
	return append(appendID(b, id), '}')
}

// spliceSeq is payload with "seq":seq added first, if it is a JSON object;
// other payloads are delivered as they are (PROTOCOL.md §6). A payload's
// own top-level "seq" is dropped: the store's is the one a client resumes
// from, and with two a JSON parser takes the last.
func spliceSeq(payload []byte, seq uint64) []byte {
	if len(payload) < 2 || payload[0] != '{' || !json.Valid(payload) {
		return payload
	}
	if bytes.Contains(payload, []byte(`"seq"`)) || bytes.Contains(payload, []byte(`\u`)) {
		payload = dropMember(payload, "seq")
	}
	b := make([]byte, 0, len(payload)+24)
	b = strconv.AppendUint(append(b, `{"seq":`...), seq, 10)
	if rest := bytes.TrimLeft(payload[1:], " \t\r\n"); rest[0] != '}' {
		b = append(b, ',')
	}
	return append(b, payload[1:]...)
}

// dropMember is obj, a valid JSON object, without its members named key
// (however the name is escaped).
func dropMember(obj []byte, key string) []byte {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return obj
	}
	var out []byte
	start := dec.InputOffset() // where the next member's bytes begin (a comma before all but the first)
	kept := 0
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return obj
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return obj
		}
		end := dec.InputOffset()
		switch {
		case name == key:
			if out == nil {
				out = append(make([]byte, 0, len(obj)), obj[:start]...) // { and the members before
			}
		case out != nil:
			if kept > 0 {
				out = append(out, ',')
			}
			out = append(out, bytes.TrimLeft(obj[start:end], " \t\r\n,")...)
			kept++
		default:
			kept++
		}
		start = end
	}
	if out == nil {
		return obj
	}
	return append(out, '}')
}

// frameSeq is the seq spliced into a server frame's payload, false when it
// has none.
func frameSeq(payload []byte) (uint64, bool) {
	const prefix = `{"seq":`
	if !bytes.HasPrefix(payload, []byte(prefix)) {
		return 0, false
	}
	rest := payload[len(prefix):]
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	seq, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return seq, err == nil
}

// DeliverStored hands a history channel's stored message to its members,
// with its seq spliced in. A message at or below the channel's last seq
// is one delivered already (a stream republishes at most once, but a
// channel resubscribed may see one twice) and is dropped. A gap before it
// is refilled from the store first (refill), off the bus's goroutine.
func (h *Hub) DeliverStored(channel string, seq, prev uint64, payload []byte) {
	h.mu.RLock()
	ch := h.channels[channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	m := storedMsg{seq, prev, payload}
	ch.qmu.Lock()
	if ch.refilling != nil {
		// A refill is under way: its messages come first.
		full := len(ch.refilling) >= maxRefillBacklog
		if !full {
			ch.refilling = append(ch.refilling, m)
		}
		ch.qmu.Unlock()
		if full {
			h.dropped(ch.name)
		}
		return
	}
	ch.qmu.Unlock()
	missedFrom, ok := ch.advance(seq, prev)
	switch {
	case !ok:
	case missedFrom != 0 && h.store != nil:
		ch.qmu.Lock()
		ch.refilling = []storedMsg{}
		ch.qmu.Unlock()
		go h.refill(ch, missedFrom, m)
	default:
		h.deliverChannel(ch, payload, spliceSeq(payload, seq), seq)
	}
}

// storedMsg is one stored message as the bus brought it.
type storedMsg struct {
	seq, prev uint64
	payload   []byte
}

// maxRefillBacklog bounds the messages of a channel that wait for a refill.
const maxRefillBacklog = 1 << 16

// refillWait bounds the read of messages the live feed missed.
const refillWait = 2 * time.Second

// refill delivers the stored messages of ch from seq from on that the live
// feed did not bring, then m, the message that showed the gap, then those
// that came meanwhile (ch.refilling, non-nil while a refill runs): a
// stream republishes each stored message at most once, and one stored by
// a leader that died before republishing it comes only from the store.
// Gaps are rare (a leader's death) but come to many channels at once:
// each refills on its own goroutine, the others' messages flowing on.
func (h *Hub) refill(ch *channel, from uint64, m storedMsg) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), refillWait)
		missed, err := h.store.Since(ctx, ch.name, from, m.seq-1, 0)
		cancel()
		if err != nil {
			h.log.Warn("history: messages the live feed missed could not be read", logChannel, ch.name, "from", from, "before", m.seq, logErr, err)
		} else {
			h.log.Info("history: refilled messages the live feed missed", logChannel, ch.name, "count", len(missed))
		}
		for _, s := range missed {
			h.deliverChannel(ch, s.Data, spliceSeq(s.Data, s.Seq), s.Seq)
		}
		h.deliverChannel(ch, m.payload, spliceSeq(m.payload, m.seq), m.seq)
		if from = h.deliverQueued(ch, &m); from == 0 {
			return
		}
	}
}

// deliverQueued delivers the messages that came during a refill of ch,
// until none is left (then the bus delivers again) or one shows another
// gap: then it returns the first seq that gap missed, with m set to the
// message that showed it.
func (h *Hub) deliverQueued(ch *channel, m *storedMsg) (gapFrom uint64) {
	for {
		ch.qmu.Lock()
		if len(ch.refilling) == 0 {
			ch.refilling = nil
			ch.qmu.Unlock()
			return 0
		}
		next := ch.refilling[0]
		ch.refilling = ch.refilling[1:]
		ch.qmu.Unlock()
		missedFrom, ok := ch.advance(next.seq, next.prev)
		switch {
		case !ok:
		case missedFrom != 0:
			*m = next
			return missedFrom
		default:
			h.deliverChannel(ch, next.payload, spliceSeq(next.payload, next.seq), next.seq)
		}
	}
}

// chatWait bounds how long a chat on a history channel is retried: past a
// failover's election (4 to 9 s) with room to spare.
const chatWait = 30 * time.Second

// publishDurably stores a chat of c on a history channel, retrying through
// a failover with one message id, so that it is stored, and delivered,
// once (PROTOCOL.md §6). c's next frames wait meanwhile, which keeps its
// chats in order; the client sees nothing of it.
func (h *Hub) publishDurably(c *Conn, channel string, payload []byte) {
	id := c.id + "." + strconv.FormatUint(c.chats.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), chatWait)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := h.store.Publish(ctx, channel, payload, id)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			h.log.Error("chat not stored", logChannel, channel, logConn, c.id, logErr, err)
			return
		case <-time.After(wait):
		}
	}
}

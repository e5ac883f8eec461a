package socketio

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/pushgrid/pushgrid/session"
)

// batchOf is payloads as the hub writes them: one buffer of WebSocket
// text frames.
func batchOf(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = wsFrame(b, []byte(p))
	}
	return b
}

// sessionWithMarker is a connected session as translate sees it.
func sessionWithMarker(marker string) *engineSession {
	es := &engineSession{}
	m := []byte(marker)
	es.marker.Store(&m)
	return es
}

// fakeTransport is a socket that takes every write and keeps it.
type fakeTransport struct {
	tryWrite func(p []byte) (int, error)
}

func (f fakeTransport) TryWrite(p []byte) (int, error) { return f.tryWrite(p) }
func (fakeTransport) Write([][]byte) error             { return nil }
func (fakeTransport) Close(session.Disconnect) error   { return nil }

// TestTranslationShared: every session without an answer in a batch gets
// the translation made for the first, and on a WebSocket writes the very
// same buffer, as a /ws member writes the hub's.
func TestTranslationShared(t *testing.T) {
	batch := batchOf(`{"type":"news","n":1}`, `[1,2]`, `{"type":"joined","channel":"a","id":"\u001fOTHER:3"}`)
	want, err := translateFrames(batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	var written [][]byte
	for i := range 3 {
		es := sessionWithMarker(fmt.Sprintf(`"\u001fM%d:`, i))
		es.ws = newWSOut(es, fakeTransport{tryWrite: func(p []byte) (int, error) {
			written = append(written, p)
			return len(p), nil
		}})
		if n, err := (transport{es}).TryWrite(batch); n != len(batch) || err != nil {
			t.Fatalf("session %d: TryWrite took %d of %d: %v", i, n, len(batch), err)
		}
	}
	for i, w := range written {
		if !bytes.Equal(w, want.frames) {
			t.Fatalf("session %d got %q, want %q", i, w, want.frames)
		}
		if unsafe.SliceData(w) != unsafe.SliceData(written[0]) {
			t.Errorf("session %d got a translation of its own, not the shared one", i)
		}
	}
	// A polling session gets the same packets.
	packets, err := sessionWithMarker(`"\u001fP:`).translate(batch)
	if err != nil || len(packets) != len(want.packets) {
		t.Fatalf("%d packets, %v", len(packets), err)
	}
	for i := range packets {
		if !bytes.Equal(packets[i], want.packets[i]) {
			t.Errorf("packet %d: %q, want %q", i, packets[i], want.packets[i])
		}
	}
}

// TestTranslationAcksNotCached: a batch that answers one session's ack
// is that session's ack, whoever translated the buffer before, and the
// others' event, whoever translates it after.
func TestTranslationAcksNotCached(t *testing.T) {
	batch := batchOf(`{"type":"news"}`, `{"type":"joined","channel":"a","id":"\u001fASKER:7"}`)
	asker, other := sessionWithMarker(`"\u001fASKER:`), sessionWithMarker(`"\u001fOTHER:`)
	event := `42["joined",{"type":"joined","channel":"a","id":"\u001fASKER:7"}]`
	ack := `437[{"type":"joined","channel":"a"}]`
	for i, k := range []struct {
		es   *engineSession
		want string
	}{{other, event}, {asker, ack}, {other, event}, {asker, ack}} {
		packets, err := k.es.translate(batch)
		if err != nil || len(packets) != 2 {
			t.Fatalf("%d: %d packets, %v", i, len(packets), err)
		}
		if got := string(packets[1]); got != k.want {
			t.Errorf("%d: %s, want %s", i, got, k.want)
		}
	}
}

// TestTranslationReusedAddress: buffers of one size, each with other
// frames, are translated and dropped, and the collector hands their
// memory to the next ones. A cache that knew an address without keeping
// its buffer would answer a new buffer with an old one's translation.
func TestTranslationReusedAddress(t *testing.T) {
	seen := make(map[uintptr]bool) // addresses, which keep nothing alive
	reused := 0
	for i := range 2000 {
		batch := batchOf(fmt.Sprintf(`{"type":"e%05d","p":"%s"}`, i, strings.Repeat("x", 200)))
		want, _ := translateFrames(batch, nil)
		got, err := (&engineSession{}).translateFrames(batch)
		if err != nil || !bytes.Equal(got, want.frames) {
			t.Fatalf("buffer %d: %q, %v; want %q", i, got, err, want.frames)
		}
		if p := uintptr(unsafe.Pointer(unsafe.SliceData(batch))); seen[p] {
			reused++
		} else {
			seen[p] = true
		}
		if i%8 == 7 {
			runtime.GC()
		}
	}
	if reused == 0 {
		t.Fatal("no address was used twice: the test proved nothing")
	}
}

// TestCacheShardClock: a batch being handed out stays while buffers that
// only one session gets come and go.
func TestCacheShardClock(t *testing.T) {
	var s cacheShard
	hot := batchOf(`{"type":"hot"}`)
	tr := &translation{}
	s.add(hot, tr)
	for i := range 3 * cacheWays {
		if s.lookup(hot) != tr {
			t.Fatalf("after %d other buffers, the batch in use was replaced", i)
		}
		s.add(batchOf(fmt.Sprintf(`{"type":"once%d"}`, i)), &translation{})
	}
	cold := batchOf(`{"type":"cold"}`)
	s.add(cold, tr)
	for i := range cacheWays {
		s.add(batchOf(fmt.Sprintf(`{"type":"more%d"}`, i)), &translation{})
	}
	if s.lookup(cold) != nil {
		t.Fatal("an entry no one used outlived a whole round of newer ones")
	}
}

// BenchmarkTranslate is the hot path: one batch to every member of a
// channel on a node. shared: the members' sessions use the cache; each:
// every member translates it anew, as without the cache.
func BenchmarkTranslate(b *testing.B) {
	const members = 1000
	var payloads []string
	for i := range 16 {
		payloads = append(payloads, fmt.Sprintf(`{"type":"bench","s":%d,"t":1700000000000000000,"p":"%s"}`, i, strings.Repeat("x", 20)))
	}
	sessions := make([]*engineSession, members)
	for i := range sessions {
		sessions[i] = sessionWithMarker(fmt.Sprintf(`"\u001fM%d:`, i))
	}
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			batch := batchOf(payloads...)
			for _, es := range sessions {
				if _, err := es.translateFrames(batch); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			batch := batchOf(payloads...)
			for range sessions {
				if _, err := translateFrames(batch, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	// Channels dispatched at once, on every P: the cache's locks.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			batch := batchOf(payloads...)
			for i := 0; pb.Next(); i++ {
				if i%members == 0 {
					batch = batchOf(payloads...)
				}
				if _, err := sessions[i%members].translateFrames(batch); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func TestHolds(t *testing.T) {
	marker := []byte(`"\u001fM:`)
	cases := []struct {
		batch string
		want  bool
	}{
		{`{"type":"news"}`, false},
		{`{"type":"news","s":"a\"b\n"}`, false},
		{`{"type":"joined","id":"\u001fOTHER:1"}`, false},
		{`{"type":"joined","id":"\u001fM:1"}`, true},
		{`{"type":"x"}{"type":"joined","id":"\u001fM:12"}`, true},
	}
	for _, c := range cases {
		if got := holds(batchOf(c.batch), marker); got != c.want {
			t.Errorf("%s: %v, want %v", c.batch, got, c.want)
		}
	}
}

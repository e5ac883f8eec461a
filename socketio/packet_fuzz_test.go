package socketio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzMax is the packet bound in the fuzz tests: small enough that the
// fuzzer reaches it.
const fuzzMax = 1 << 12

var engineErrors = []error{ErrTooLarge, ErrEmpty, ErrPacketType, ErrUTF8, ErrBase64}

var socketErrors = []error{
	ErrTooLarge, ErrEmpty, ErrPacketType, ErrUTF8, ErrBinary, ErrNamespace, ErrAckID, ErrJSON,
	ErrDepth, ErrDuplicateKey, ErrPayload, ErrEventName, ErrReservedEvent, ErrTooManyArgs,
}

func isOneOf(err error, set []error) bool {
	for _, e := range set {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// segmentOK is an independent statement of what one packet of a payload
// must be: a type '0' to '6' and UTF-8 text, or 'b' and padded base64 in
// the one form that re-encodes to itself.
func segmentOK(seg []byte) bool {
	switch {
	case len(seg) == 0:
		return false
	case seg[0] == 'b':
		data, err := base64.StdEncoding.DecodeString(string(seg[1:]))
		return err == nil && base64.StdEncoding.EncodeToString(data) == string(seg[1:])
	default:
		return '0' <= seg[0] && seg[0] <= '6' && utf8.Valid(seg[1:])
	}
}

// encodeEngine encodes p as a polling payload carries it.
func encodeEngine(p EnginePacket) []byte {
	if p.Binary {
		return base64Packet(p.Data)
	}
	return AppendEngine(nil, p.Type, p.Data)
}

func FuzzEnginePayload(f *testing.F) {
	for _, s := range []string{
		"4hello\x1e2\x1e4world", "4hello\x1ebAQIDBA==", "4test1\x1e4test2\x1e4test3",
		"42[\"hello\"]\x1e42[\"world\"]", "4hello\x1e4€€€", "2probe", "3probe", "5", "6", "1", "2", "3",
		`0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}`,
		"abc",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		var got []EnginePacket
		err := DecodePayload(body, fuzzMax, func(p EnginePacket) error {
			got = append(got, p)
			return nil
		})
		if !bytes.Equal(in, body) {
			t.Fatalf("DecodePayload changed its input %q to %q", in, body)
		}
		segs := bytes.Split(body, []byte{Separator})
		if len(body) > fuzzMax {
			if !errors.Is(err, ErrTooLarge) || len(got) > 0 {
				t.Fatalf("a body of %d bytes: %v after %d packets, want ErrTooLarge before any", len(body), err, len(got))
			}
			return
		}

		// The packets handled are the good ones before the first bad one,
		// and each is what DecodeEngine makes of its segment.
		bad := len(segs)
		for i, seg := range segs {
			if !segmentOK(seg) {
				bad = i
				break
			}
		}
		if (err == nil) != (bad == len(segs)) {
			t.Fatalf("DecodePayload(%q): error %v, but segment %d of %d is the first bad one", body, err, bad, len(segs))
		}
		if err != nil && !isOneOf(err, engineErrors) {
			t.Fatalf("DecodePayload(%q): unexpected error %v", body, err)
		}
		if len(got) != bad {
			t.Fatalf("DecodePayload(%q) handled %d packets, want the %d before the bad one", body, len(got), bad)
		}
		for i, p := range got {
			q, err := DecodeEngine(segs[i], fuzzMax)
			if err != nil || viewEngine(p) != viewEngine(q) {
				t.Fatalf("segment %q: DecodePayload %+v, DecodeEngine %+v, %v", segs[i], viewEngine(p), viewEngine(q), err)
			}
		}
		if err != nil {
			return
		}

		// Decoding is canonical: encoding what decoded gives the body back,
		// so decoding that gives the same packets.
		packets := make([][]byte, len(got))
		for i, p := range got {
			packets[i] = encodeEngine(p)
		}
		if enc := AppendPayload(nil, packets); !bytes.Equal(enc, body) {
			t.Fatalf("DecodePayload(%q) re-encodes as %q", body, enc)
		}

		// The body as the data of one message, batched with a ping.
		if utf8.Valid(body) && bytes.IndexByte(body, Separator) < 0 {
			batch := AppendPayload(nil, [][]byte{AppendEngine(nil, EngineMessage, body), AppendEngine(nil, EnginePing, nil)})
			back, err := decodeAll(batch, len(batch))
			want := []engineView{{EngineMessage, string(body), false}, {EnginePing, "", false}}
			if err != nil || len(back) != 2 || back[0] != want[0] || back[1] != want[1] {
				t.Fatalf("a message of %q batched: %+v, %v", body, back, err)
			}
		}
	})
}

// checkSocketPacket checks what every decoded packet must be.
func checkSocketPacket(t *testing.T, in []byte, p SocketPacket) {
	t.Helper()
	switch p.Type {
	case SocketConnect, SocketDisconnect, SocketEvent, SocketAck, SocketConnectError:
	default:
		t.Fatalf("%q decoded as type %q", in, p.Type)
	}
	if !strings.HasPrefix(p.Namespace, "/") || strings.Contains(p.Namespace, ",") || !validNamespace([]byte(p.Namespace)) {
		t.Fatalf("%q decoded with namespace %q", in, p.Namespace)
	}
	if p.AckID > MaxAckID || (!p.HasAck && p.AckID != 0) || (p.Type == SocketAck && !p.HasAck) {
		t.Fatalf("%q decoded with ack id %d (%v)", in, p.AckID, p.HasAck)
	}
	if p.Data != nil {
		if err := strictJSON(p.Data); err != nil || !bytes.HasSuffix(in, p.Data) || isSpace(p.Data[0]) {
			t.Fatalf("%q decoded with payload %q: %v", in, p.Data, err)
		}
	}
	switch p.Type {
	case SocketEvent:
		if IsReservedEvent(p.Event) || len(p.Args) > MaxArgs {
			t.Fatalf("%q decoded as event %q with %d arguments", in, p.Event, len(p.Args))
		}
	case SocketDisconnect:
		if p.Data != nil {
			t.Fatalf("%q decoded as a DISCONNECT with a payload", in)
		}
	}
	var elems []json.RawMessage
	if p.Type == SocketEvent || p.Type == SocketAck {
		if err := json.Unmarshal(p.Data, &elems); err != nil {
			t.Fatalf("%q: payload %q is not an array: %v", in, p.Data, err)
		}
	}
	if p.Type == SocketEvent {
		var name string
		if len(elems) == 0 || json.Unmarshal(elems[0], &name) != nil || name != p.Event {
			t.Fatalf("%q decoded as event %q, encoding/json reads %q", in, p.Event, elems)
		}
		elems = elems[1:]
	}
	if len(elems) != len(p.Args) {
		t.Fatalf("%q decoded with %d arguments, encoding/json reads %d", in, len(p.Args), len(elems))
	}
	for i, a := range p.Args {
		if !bytes.Equal(a, elems[i]) {
			t.Fatalf("%q: argument %d is %q, encoding/json reads %q", in, i, a, elems[i])
		}
	}
}

// decodeOwn decodes a packet that the appenders of this package built: an
// Engine.IO message frame carrying a Socket.IO packet.
func decodeOwn(t *testing.T, frame []byte) SocketPacket {
	t.Helper()
	e, err := DecodeEngine(frame, len(frame))
	if err != nil || e.Type != EngineMessage {
		t.Fatalf("%q: not a message packet (%v)", frame, err)
	}
	p, err := DecodeSocket(e.Data, len(e.Data))
	if err != nil {
		t.Fatalf("%q does not decode: %v", frame, err)
	}
	return p
}

// reencode encodes p with the appender that builds its kind of packet, if
// there is one, and checks that it decodes as p.
func reencode(t *testing.T, p SocketPacket) {
	t.Helper()
	var frame []byte
	switch {
	case p.Type == SocketEvent && p.Namespace == DefaultNamespace && !p.HasAck:
		frame = AppendEvent(nil, p.Event, p.Args...)
	case p.Type == SocketAck && p.Namespace == DefaultNamespace:
		frame = AppendAck(nil, p.AckID, p.Args...)
	case p.Type == SocketDisconnect && p.Namespace == DefaultNamespace && !p.HasAck:
		frame = AppendDisconnect(nil)
	default:
		return
	}
	q := decodeOwn(t, frame)
	a, b := viewSocket(p), viewSocket(q)
	a.Data, b.Data = "", "" // white space between elements is not kept
	if a != b {
		t.Fatalf("%+v re-encodes as %q, which decodes as %+v", viewSocket(p), frame, viewSocket(q))
	}
}

func FuzzSocketPacket(f *testing.F) {
	for _, s := range []string{
		"0", `0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}`, `4{"message":"Not authorized"}`,
		`2["foo"]`, `2/admin,["bar"]`, `212["foo"]`, `3/admin,13["bar"]`, "1", "1/admin,",
		`51-["baz",{"_placeholder":true,"num":0}]`, `61-15["bar",{"_placeholder":true,"num":0}]`,
		`0{"token":"123"}`, "0/custom,", `0/custom,{"token":"abc"}`, "0/random",
		`2["message",1,"2",{"3":[true]}]`, `2456["message-with-ack",1,"2",{"3":[false]}]`,
		"abc", "2{}", `2abc["message-with-ack",1,"2",{"3":[false]}]`,
		`42["some","data"`, `0/admin,"invalid"`, "0[]", "1/admin,{}", `2/admin,"invalid`, "2/admin,{}",
		`2[{"toString":"foo"}]`, `2[true,"foo"]`, `2[null,"bar"]`, `2["connect"]`, `2["disconnect","123"]`, "999",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		p, err := DecodeSocket(data, fuzzMax)
		if !bytes.Equal(in, data) {
			t.Fatalf("DecodeSocket changed its input %q to %q", in, data)
		}
		switch {
		case len(data) > fuzzMax:
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("a packet of %d bytes: %v, want ErrTooLarge", len(data), err)
			}
		case err != nil:
			if !isOneOf(err, socketErrors) {
				t.Fatalf("DecodeSocket(%q): unexpected error %v", data, err)
			}
		default:
			checkSocketPacket(t, data, p)
			reencode(t, p)
		}

		// The input as the arguments of an event, against strictJSON.
		ev := append(append([]byte(`2["e",`), data...), ']')
		p, err = DecodeSocket(ev, len(ev))
		want := strictJSON(ev[1:])
		var elems []json.RawMessage
		switch {
		case want == nil && errors.Is(err, ErrTooManyArgs):
			if json.Unmarshal(ev[1:], &elems) != nil || len(elems) <= 1+MaxArgs {
				t.Fatalf("%q: ErrTooManyArgs, with %d elements", ev, len(elems))
			}
		case (err == nil) != (want == nil):
			t.Fatalf("DecodeSocket(%q): %v, but strictJSON: %v", ev, err, want)
		case err == nil:
			checkSocketPacket(t, ev, p)
			reencode(t, p)
		}

		// The input as text, through every appender that writes a string.
		s := string(data)
		text := jsonRoundTrip(s)
		var v struct{ SID, Message string }
		if q := decodeOwn(t, AppendConnect(nil, s)); q.Type != SocketConnect || json.Unmarshal(q.Data, &v) != nil || v.SID != text {
			t.Fatalf("AppendConnect(%q) decodes as %+v", s, viewSocket(q))
		}
		if q := decodeOwn(t, AppendConnectError(nil, DefaultNamespace, s)); q.Type != SocketConnectError || json.Unmarshal(q.Data, &v) != nil || v.Message != text {
			t.Fatalf("AppendConnectError(%q) decodes as %+v", s, viewSocket(q))
		}
		if q := decodeOwn(t, AppendEventText(nil, "message", data)); len(q.Args) != 1 || json.Unmarshal(q.Args[0], &v.Message) != nil || v.Message != text {
			t.Fatalf("AppendEventText(%q) decodes as %+v", s, viewSocket(q))
		}
		if frame := AppendEvent(nil, s); IsReservedEvent(text) {
			if _, err := DecodeSocket(frame[1:], len(frame)); !errors.Is(err, ErrReservedEvent) {
				t.Fatalf("AppendEvent(%q), a reserved name: %v", s, err)
			}
		} else if q := decodeOwn(t, frame); q.Event != text || len(q.Args) != 0 {
			t.Fatalf("AppendEvent(%q) decodes as %+v", s, viewSocket(q))
		}
		open := AppendOpen(nil, Handshake{SID: s, Upgrade: true, PingInterval: time.Second, PingTimeout: time.Second, MaxPayload: 1})
		var h struct{ SID string }
		if e, err := DecodeEngine(open, len(open)); err != nil || e.Type != EngineOpen || json.Unmarshal(e.Data, &h) != nil || h.SID != text {
			t.Fatalf("AppendOpen with sid %q decodes as %+v, %v", s, viewEngine(e), err)
		}
		if bytes.IndexByte(open, Separator) >= 0 {
			t.Fatalf("AppendOpen with sid %q holds a separator", s)
		}
	})
}

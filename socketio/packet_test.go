package socketio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

// The byte strings below come from the protocol documents
// (docs/engine.io-protocol/v4-current.md, docs/socket.io-protocol/v5-current.md),
// their test suites (v4-test-suite, v5-test-suite) and the parsers' own tests
// (packages/engine.io-parser, packages/socket.io-parser/test/parser.js), all in
// github.com/socketio/socket.io.

const testMax = 1 << 20

// engineView is an EnginePacket in a form that compares with ==.
type engineView struct {
	Type   EngineType
	Data   string
	Binary bool
}

func viewEngine(p EnginePacket) engineView {
	return engineView{p.Type, string(p.Data), p.Binary}
}

func TestDecodeEngine(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want engineView
		err  error
	}{
		{"probe ping", "2probe", engineView{EnginePing, "probe", false}, nil},
		{"probe pong", "3probe", engineView{EnginePong, "probe", false}, nil},
		{"heartbeat ping", "2", engineView{EnginePing, "", false}, nil},
		{"heartbeat pong", "3", engineView{EnginePong, "", false}, nil},
		{"message", "4hello", engineView{EngineMessage, "hello", false}, nil},
		{"message in UTF-8", "4€€€", engineView{EngineMessage, "€€€", false}, nil},
		{"socket.io event", `42["hello"]`, engineView{EngineMessage, `2["hello"]`, false}, nil},
		{"close", "1", engineView{EngineClose, "", false}, nil},
		{"upgrade", "5", engineView{EngineUpgrade, "", false}, nil},
		{"noop", "6", engineView{EngineNoop, "", false}, nil},
		{"open", `0{"sid":"x"}`, engineView{EngineOpen, `{"sid":"x"}`, false}, nil},
		{"binary", "bAQIDBA==", engineView{EngineMessage, "\x01\x02\x03\x04", true}, nil},
		{"empty binary", "b", engineView{EngineMessage, "", true}, nil},
		{"empty", "", engineView{}, ErrEmpty},
		{"invalid packet format", "abc", engineView{}, ErrPacketType},
		{"type 7", "7", engineView{}, ErrPacketType},
		{"NUL", "\x00", engineView{}, ErrPacketType},
		{"invalid UTF-8", "4\xff", engineView{}, ErrUTF8},
		{"UTF-8 surrogate", "2\xed\xa0\x80", engineView{}, ErrUTF8},
		{"base64 without padding", "bAQIDBA", engineView{}, ErrBase64},
		{"base64 with short padding", "bAQIDBA=", engineView{}, ErrBase64},
		{"base64 with trailing bits", "bAQIDBB==", engineView{}, ErrBase64},
		{"base64 with a newline", "bAQID\nBA==", engineView{}, ErrBase64},
		{"not base64", "b!!!!", engineView{}, ErrBase64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeEngine([]byte(tc.in), testMax)
			if !errors.Is(err, tc.err) {
				t.Fatalf("DecodeEngine(%q): error %v, want %v", tc.in, err, tc.err)
			}
			if got := viewEngine(p); err == nil && got != tc.want {
				t.Fatalf("DecodeEngine(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeEngineTooLarge(t *testing.T) {
	if _, err := DecodeEngine([]byte("4hello"), 6); err != nil {
		t.Fatalf("a packet of exactly max bytes: %v", err)
	}
	if _, err := DecodeEngine([]byte("4hello"), 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a packet over max: %v, want ErrTooLarge", err)
	}
}

// decodeAll decodes a polling payload and returns the packets fn saw.
func decodeAll(body []byte, max int) ([]engineView, error) {
	var got []engineView
	err := DecodePayload(body, max, func(p EnginePacket) error {
		got = append(got, viewEngine(p))
		return nil
	})
	return got, err
}

func TestDecodePayload(t *testing.T) {
	msg := func(s string) engineView { return engineView{EngineMessage, s, false} }
	for _, tc := range []struct {
		name string
		in   string
		want []engineView // the packets handled, also before an error
		err  error
	}{
		{"spec example", "4hello\x1e2\x1e4world", []engineView{msg("hello"), {EnginePing, "", false}, msg("world")}, nil},
		{"with binary", "4hello\x1ebAQIDBA==", []engineView{msg("hello"), {EngineMessage, "\x01\x02\x03\x04", true}}, nil},
		{"three messages", "4test1\x1e4test2\x1e4test3", []engineView{msg("test1"), msg("test2"), msg("test3")}, nil},
		{"socket.io events", "42[\"hello\"]\x1e42[\"world\"]", []engineView{msg(`2["hello"]`), msg(`2["world"]`)}, nil},
		{"UTF-8", "4hello\x1e4€€€", []engineView{msg("hello"), msg("€€€")}, nil},
		{"one packet", "3", []engineView{{EnginePong, "", false}}, nil},
		{"empty body", "", nil, ErrEmpty},
		{"only a separator", "\x1e", nil, ErrEmpty},
		{"trailing separator", "4a\x1e", []engineView{msg("a")}, ErrEmpty},
		{"two separators", "4a\x1e\x1e4b", []engineView{msg("a")}, ErrEmpty},
		{"invalid packet format", "abc", nil, ErrPacketType},
		{"bad packet after a good one", "4a\x1e9\x1e4b", []engineView{msg("a")}, ErrPacketType},
		{"bad base64", "4a\x1ebAQ", []engineView{msg("a")}, ErrBase64},
		// JSON never holds a raw separator, so one splits a string in two.
		{"separator in a string", "42[\"a\x1eb\"]", []engineView{msg(`2["a`)}, ErrBase64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll([]byte(tc.in), testMax)
			if !errors.Is(err, tc.err) {
				t.Fatalf("DecodePayload(%q): error %v, want %v", tc.in, err, tc.err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("DecodePayload(%q) handled %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodePayloadStops(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := DecodePayload([]byte("4a\x1e4b\x1e4c"), testMax, func(p EnginePacket) error {
		calls++
		if string(p.Data) == "b" {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("DecodePayload returned %v after %d calls, want fn's error after 2", err, calls)
	}

	calls = 0
	err = DecodePayload([]byte("4a\x1e4b"), 4, func(EnginePacket) error { calls++; return nil })
	if !errors.Is(err, ErrTooLarge) || calls != 0 {
		t.Fatalf("a body over max: %v after %d calls, want ErrTooLarge before any", err, calls)
	}
}

func TestAppendEngine(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"probe pong", AppendEngine(nil, EnginePong, []byte("probe")), "3probe"},
		{"ping", AppendEngine(nil, EnginePing, nil), "2"},
		{"noop", AppendEngine(nil, EngineNoop, nil), "6"},
		{"appends", AppendEngine([]byte("x"), EngineMessage, []byte("hello")), "x4hello"},
		{"payload", AppendPayload(nil, [][]byte{[]byte("4hello"), []byte("2"), []byte("4world")}), "4hello\x1e2\x1e4world"},
		{"payload of one", AppendPayload(nil, [][]byte{[]byte("6")}), "6"},
		{"empty payload", AppendPayload([]byte("x"), nil), "x"},
		{
			"open, polling",
			AppendOpen(nil, Handshake{SID: "lv_VI97HAXpY6yYWAAAC", Upgrade: true, PingInterval: 25 * time.Second, PingTimeout: 5 * time.Second, MaxPayload: 1000000}),
			`0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}`,
		},
		{
			"open, websocket",
			AppendOpen(nil, Handshake{SID: "a", PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond, MaxPayload: 1000000}),
			`0{"sid":"a","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// socketView is a SocketPacket in a form that compares with ==; Ack is -1
// for none.
type socketView struct {
	Type  SocketType
	NS    string
	Ack   int64
	Data  string
	Event string
	Args  string // the arguments joined by " | "
}

func viewSocket(p SocketPacket) socketView {
	v := socketView{Type: p.Type, NS: p.Namespace, Ack: -1, Data: string(p.Data), Event: p.Event}
	if p.HasAck {
		v.Ack = int64(p.AckID)
	}
	args := make([]string, len(p.Args))
	for i, a := range p.Args {
		args[i] = string(a)
	}
	v.Args = strings.Join(args, " | ")
	return v
}

func TestDecodeSocket(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	manyKeys := func(last string) string {
		var b strings.Builder
		b.WriteString(`{`)
		for i := range 20 {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(`"` + last + `":0}`)
		return b.String()
	}
	for _, tc := range []struct {
		name string
		in   string
		want socketView
		err  error
	}{
		// The protocol document's examples.
		{"connect", "0", socketView{Type: SocketConnect, NS: "/", Ack: -1}, nil},
		{"connect to a namespace", `0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}`, socketView{Type: SocketConnect, NS: "/admin", Ack: -1, Data: `{"sid":"oSO0OpakMV_3jnilAAAA"}`}, nil},
		{"connect error", `4{"message":"Not authorized"}`, socketView{Type: SocketConnectError, NS: "/", Ack: -1, Data: `{"message":"Not authorized"}`}, nil},
		{"connect error string", `4"Unauthorized"`, socketView{Type: SocketConnectError, NS: "/", Ack: -1, Data: `"Unauthorized"`}, nil},
		{"event", `2["foo"]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["foo"]`, Event: "foo"}, nil},
		{"event in a namespace", `2/admin,["bar"]`, socketView{Type: SocketEvent, NS: "/admin", Ack: -1, Data: `["bar"]`, Event: "bar"}, nil},
		{"event with ack", `212["foo"]`, socketView{Type: SocketEvent, NS: "/", Ack: 12, Data: `["foo"]`, Event: "foo"}, nil},
		{"ack in a namespace", `3/admin,13["bar"]`, socketView{Type: SocketAck, NS: "/admin", Ack: 13, Data: `["bar"]`, Args: `"bar"`}, nil},
		{"empty ack", `312[]`, socketView{Type: SocketAck, NS: "/", Ack: 12, Data: `[]`}, nil},
		{"disconnect", "1", socketView{Type: SocketDisconnect, NS: "/", Ack: -1}, nil},
		{"disconnect from a namespace", "1/admin,", socketView{Type: SocketDisconnect, NS: "/admin", Ack: -1}, nil},
		{"binary event", `51-["baz",{"_placeholder":true,"num":0}]`, socketView{}, ErrBinary},
		{"binary event in a namespace", `52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, socketView{}, ErrBinary},
		{"binary ack", `61-15["bar",{"_placeholder":true,"num":0}]`, socketView{}, ErrBinary},

		// The v5 test suite.
		{"connect with auth", `0{"token":"123"}`, socketView{Type: SocketConnect, NS: "/", Ack: -1, Data: `{"token":"123"}`}, nil},
		{"connect to custom", "0/custom,", socketView{Type: SocketConnect, NS: "/custom", Ack: -1}, nil},
		{"connect to custom with auth", `0/custom,{"token":"abc"}`, socketView{Type: SocketConnect, NS: "/custom", Ack: -1, Data: `{"token":"abc"}`}, nil},
		{"namespace without comma", "0/random", socketView{Type: SocketConnect, NS: "/random", Ack: -1}, nil},
		{"disconnect without comma", "1/custom", socketView{Type: SocketDisconnect, NS: "/custom", Ack: -1}, nil},
		{"event with arguments", `2["message",1,"2",{"3":[true]}]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["message",1,"2",{"3":[true]}]`, Event: "message", Args: `1 | "2" | {"3":[true]}`}, nil},
		{"event with arguments and ack", `2456["message-with-ack",1,"2",{"3":[false]}]`, socketView{Type: SocketEvent, NS: "/", Ack: 456, Data: `["message-with-ack",1,"2",{"3":[false]}]`, Event: "message-with-ack", Args: `1 | "2" | {"3":[false]}`}, nil},
		{"unknown packet type", "abc", socketView{}, ErrPacketType},
		{"invalid payload format", "2{}", socketView{}, ErrPayload},
		{"invalid ack id", `2abc["message-with-ack",1,"2",{"3":[false]}]`, socketView{}, ErrPayload},

		// socket.io-parser's tests of what it refuses.
		{"connect error not an object", `42["some","data"`, socketView{}, ErrPayload},
		{"connect with a string", `0/admin,"invalid"`, socketView{}, ErrPayload},
		{"connect with an array", "0[]", socketView{}, ErrPayload},
		{"disconnect with a payload", "1/admin,{}", socketView{}, ErrPayload},
		{"event with a string", `2/admin,"invalid`, socketView{}, ErrPayload},
		{"event with an object", "2/admin,{}", socketView{}, ErrPayload},
		{"event named by an object", `2[{"toString":"foo"}]`, socketView{}, ErrEventName},
		{"event named true", `2[true,"foo"]`, socketView{}, ErrEventName},
		{"event named null", `2[null,"bar"]`, socketView{}, ErrEventName},
		{"reserved connect", `2["connect"]`, socketView{}, ErrReservedEvent},
		{"reserved disconnect", `2["disconnect","123"]`, socketView{}, ErrReservedEvent},
		{"type 9", "999", socketView{}, ErrPacketType},
		{"bad binary", "5", socketView{}, ErrBinary},

		// What pushgrid refuses besides, and the edges of what it takes.
		{"empty", "", socketView{}, ErrEmpty},
		{"event without payload", "2", socketView{}, ErrPayload},
		{"event with empty array", "2[]", socketView{}, ErrEventName},
		{"event named by a number", `2[1,"a"]`, socketView{}, ErrEventName},
		{"reserved newListener", `2["newListener"]`, socketView{}, ErrReservedEvent},
		{"escaped event name", `2["a\"b\u00e9\ud83d\ude00"]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["a\"b\u00e9\ud83d\ude00"]`, Event: "a\"bé😀"}, nil},
		{"escaped reserved name", `2["conn\u0065ct"]`, socketView{}, ErrReservedEvent},
		{"ack without id", "3[]", socketView{}, ErrPayload},
		{"ack with an object", "31{}", socketView{}, ErrPayload},
		{"connect error without payload", "4", socketView{}, ErrPayload},
		{"largest ack id", `29007199254740991["a"]`, socketView{Type: SocketEvent, NS: "/", Ack: 9007199254740991, Data: `["a"]`, Event: "a"}, nil},
		{"ack id over 2^53-1", `29007199254740992["a"]`, socketView{}, ErrAckID},
		{"huge ack id", `2123456789012345678901234567890["a"]`, socketView{}, ErrAckID},
		{"ack id of 17 digits", `300000000000000001[]`, socketView{}, ErrAckID},
		{"ack id with leading zeros", `30000000000000001[]`, socketView{Type: SocketAck, NS: "/", Ack: 1, Data: `[]`}, nil},
		{"space before the payload", `2 ["a"]`, socketView{}, ErrJSON},
		{"space inside the ack id", `21 2["a"]`, socketView{}, ErrJSON},
		{"newline before the payload", "2/a,\n[\"a\"]", socketView{}, ErrJSON},
		{"space after the payload", "2[\"a\"] \n", socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: "[\"a\"] \n", Event: "a"}, nil},
		{"space inside the payload", `2[ "a" , 1 , { "b" : [ ] } ]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `[ "a" , 1 , { "b" : [ ] } ]`, Event: "a", Args: `1 | { "b" : [ ] }`}, nil},
		{"text after the payload", `2["a"]x`, socketView{}, ErrJSON},
		{"two payloads", `2["a"]["b"]`, socketView{}, ErrJSON},
		{"unterminated", `2["a`, socketView{}, ErrJSON},
		{"bad escape", `2["\x"]`, socketView{}, ErrJSON},
		{"short unicode escape", `2["\u12"]`, socketView{}, ErrJSON},
		{"raw separator in a string", "2[\"a\x1eb\"]", socketView{}, ErrJSON},
		{"raw newline in a string", "2[\"a\nb\"]", socketView{}, ErrJSON},
		{"invalid UTF-8", "2[\"\xff\"]", socketView{}, ErrUTF8},
		{"overlong UTF-8", "2[\"e\",\"\xc0\xaf\"]", socketView{}, ErrUTF8},
		{"UTF-8 surrogate", "2[\"\xed\xa0\x80\"]", socketView{}, ErrUTF8},
		{"lone surrogate escape", `2["e","\ud800"]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["e","\ud800"]`, Event: "e", Args: `"\ud800"`}, nil},
		{"numbers", `31[-0.5e+10,0,1E3,-0]`, socketView{Type: SocketAck, NS: "/", Ack: 1, Data: `[-0.5e+10,0,1E3,-0]`, Args: `-0.5e+10 | 0 | 1E3 | -0`}, nil},
		{"leading zero", `31[01]`, socketView{}, ErrJSON},
		{"bare point", `31[1.]`, socketView{}, ErrJSON},
		{"bare minus", `31[-]`, socketView{}, ErrJSON},
		{"bad literal", `31[tru]`, socketView{}, ErrJSON},
		{"trailing comma", `31[1,]`, socketView{}, ErrJSON},
		{"separator in a namespace", "2/a\x1e,[\"x\"]", socketView{}, ErrNamespace},
		{"invalid UTF-8 in a namespace", "2/a\xff,[\"x\"]", socketView{}, ErrNamespace},
		{"explicit default namespace", `2/,["x"]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["x"]`, Event: "x"}, nil},
		{"nesting 256 deep", `31` + deep(256), socketView{Type: SocketAck, NS: "/", Ack: 1, Data: deep(256), Args: deep(255)}, nil},
		{"nesting 257 deep", `31` + deep(257), socketView{}, ErrDepth},
		{"objects 300 deep", `0` + strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat(`}`, 300), socketView{}, ErrDepth},
		{"duplicate key", `0{"token":"a","token":"b"}`, socketView{}, ErrDuplicateKey},
		{"duplicate key but for case", `0{"token":"a","TOKEN":"b"}`, socketView{}, ErrDuplicateKey},
		{"duplicate escaped key", `2["e",{"a":1,"\u0061":2}]`, socketView{}, ErrDuplicateKey},
		{"duplicate key in a nested object", `2["e",[{"x":{"a":1,"A":2}}]]`, socketView{}, ErrDuplicateKey},
		{"same key in sibling objects", `2["e",{"a":1},{"a":2}]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["e",{"a":1},{"a":2}]`, Event: "e", Args: `{"a":1} | {"a":2}`}, nil},
		{"duplicate among many keys", `2["e",` + manyKeys("K3") + `]`, socketView{}, ErrDuplicateKey},
		{"Kelvin sign among many keys", `2["e",` + manyKeys("\u212a5") + `]`, socketView{}, ErrDuplicateKey},
		{"many distinct keys", `2["e",` + manyKeys("k20") + `]`, socketView{Type: SocketEvent, NS: "/", Ack: -1, Data: `["e",` + manyKeys("k20") + `]`, Event: "e", Args: manyKeys("k20")}, nil},
		{"too many arguments", `2["e"` + strings.Repeat(`,1`, MaxArgs+1) + `]`, socketView{}, ErrTooManyArgs},
		{"too many ack arguments", `31[1` + strings.Repeat(`,1`, MaxArgs) + `]`, socketView{}, ErrTooManyArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			p, err := DecodeSocket(in, testMax)
			if !errors.Is(err, tc.err) {
				t.Fatalf("DecodeSocket(%q): error %v, want %v", tc.in, err, tc.err)
			}
			if got := viewSocket(p); err == nil && got != tc.want {
				t.Fatalf("DecodeSocket(%q) =\n%+v, want\n%+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeSocketBounds(t *testing.T) {
	in := []byte(`2["e",1]`)
	if _, err := DecodeSocket(in, len(in)); err != nil {
		t.Fatalf("a packet of exactly max bytes: %v", err)
	}
	if _, err := DecodeSocket(in, len(in)-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a packet over max: %v, want ErrTooLarge", err)
	}
	ev := []byte(`2["e"` + strings.Repeat(`,1`, MaxArgs) + `]`)
	if p, err := DecodeSocket(ev, testMax); err != nil || len(p.Args) != MaxArgs {
		t.Fatalf("an event of MaxArgs arguments: %d arguments, %v", len(p.Args), err)
	}
}

// The arguments alias the input but are capped, so that appending to one
// cannot overwrite what follows it.
func TestDecodeSocketArgsCapped(t *testing.T) {
	in := []byte(`2["e",1,2]`)
	p, err := DecodeSocket(in, testMax)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(p.Args[0], 'x')
	_ = append(p.Data, 'x')
	if string(in) != `2["e",1,2]` {
		t.Fatalf("appending to an argument changed the input to %q", in)
	}
}

func TestAppendSocket(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"connect", AppendConnect(nil, "wZX3oN0bSVIhsaknAAAI"), `40{"sid":"wZX3oN0bSVIhsaknAAAI"}`},
		{"connect error", AppendConnectError(nil, "/", "Not authorized"), `44{"message":"Not authorized"}`},
		{"connect error, no namespace", AppendConnectError(nil, "", "Not authorized"), `44{"message":"Not authorized"}`},
		{"connect error in a namespace", AppendConnectError(nil, "/random", "Invalid namespace"), `44/random,{"message":"Invalid namespace"}`},
		{"event", AppendEvent(nil, "hey", raw(`"Jude"`)), `42["hey","Jude"]`},
		{"event with an object", AppendEvent(nil, "auth", raw(`{"token":"123"}`)), `42["auth",{"token":"123"}]`},
		{"event with arguments", AppendEvent(nil, "message-back", raw(`1`), raw(`"2"`), raw(`{"3":[true]}`)), `42["message-back",1,"2",{"3":[true]}]`},
		{"event without arguments", AppendEvent(nil, "welcome"), `42["welcome"]`},
		{"ack", AppendAck(nil, 456, raw(`1`), raw(`"2"`), raw(`{"3":[false]}`)), `43456[1,"2",{"3":[false]}]`},
		{"empty ack", AppendAck(nil, 12), `4312[]`},
		{"largest ack", AppendAck(nil, MaxAckID, raw(`null`)), `439007199254740991[null]`},
		{"disconnect", AppendDisconnect(nil), `41`},
		{"appends", AppendDisconnect([]byte("x")), `x41`},
		{"text event", AppendEventText(nil, "message", []byte("not JSON")), `42["message","not JSON"]`},
		{
			"escaped name",
			AppendEvent(nil, "q\"b\\s\n\r\t\x00\x1e\x7f</>é😀\xff\xc0\xaf"),
			`42["q\"b\\s\n\r\t\u0000\u001e` + "\x7f</>é😀" + `\ufffd\ufffd\ufffd"]`,
		},
		{
			"escaped text",
			AppendEventText(nil, "message", []byte("a\x1eb\xffc\"")),
			`42["message","a\u001eb\ufffdc\""]`,
		},
		{"escaped message", AppendConnectError(nil, "/", "bad \"token\"\n"), `44{"message":"bad \"token\"\n"}`},
		{"escaped sid", AppendConnect(nil, "a\"b"), `40{"sid":"a\"b"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// jsonRoundTrip is what a JSON reader gets back from s written as a JSON
// string by encoding/json.
func jsonRoundTrip(s string) string {
	b, _ := json.Marshal(s)
	var back string
	if err := json.Unmarshal(b, &back); err != nil {
		panic(err)
	}
	return back
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "quote\" backslash\\ slash/", "\x00\x01\x08\x0c\x1e\x1f\x7f",
		"é😀\u2028\u2029", "\xff", "a\xc0\xafb", "\xed\xa0\x80", "\xf4\x90\x80\x80", "😀"[:2] + "x",
	} {
		b := jsonstr.Append(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("jsonstr.Append(%q) = %q, not a JSON string: %v", s, b, err)
		}
		if want := jsonRoundTrip(s); back != want {
			t.Fatalf("jsonstr.Append(%q) reads back as %q, encoding/json's as %q", s, back, want)
		}
		if bytes.IndexByte(b, Separator) >= 0 || !utf8.Valid(b) {
			t.Fatalf("jsonstr.Append(%q) = %q holds a separator or invalid UTF-8", s, b)
		}
		if !bytes.Equal(jsonstr.Append(nil, []byte(s)), b) {
			t.Fatalf("jsonstr.Append(%q) differs for string and []byte", s)
		}
	}
}

// Encoders are on the delivery path; DecodeEngine on every frame received.
func TestAllocations(t *testing.T) {
	buf := make([]byte, 0, 512)
	arg := json.RawMessage(`{"type":"chat","channel":"lobby","user":"alice","msg":"hi"}`)
	frame := []byte(`42["chat","lobby",{"text":"hi"}]`)
	for _, tc := range []struct {
		name string
		max  float64
		fn   func()
	}{
		{"AppendEvent", 0, func() { buf = AppendEvent(buf[:0], "chat", arg) }},
		{"AppendEventText", 0, func() { buf = AppendEventText(buf[:0], "message", frame) }},
		{"AppendAck", 0, func() { buf = AppendAck(buf[:0], 42, arg) }},
		{"AppendConnect", 0, func() { buf = AppendConnect(buf[:0], "wZX3oN0bSVIhsaknAAAI") }},
		{"AppendConnectError", 0, func() { buf = AppendConnectError(buf[:0], "/x", "Invalid namespace") }},
		{"AppendOpen", 0, func() { buf = AppendOpen(buf[:0], Handshake{SID: "x", Upgrade: true, MaxPayload: 1e6}) }},
		{"AppendPayload", 0, func() { buf = AppendPayload(buf[:0], [][]byte{frame, frame}) }},
		{"DecodeEngine", 0, func() { _, _ = DecodeEngine(frame, testMax) }},
		// The event name and one slice of arguments.
		{"DecodeSocket", 2, func() { _, _ = DecodeSocket(frame[1:], testMax) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.fn); n > tc.max {
				t.Fatalf("%v allocations, want at most %v", n, tc.max)
			}
		})
	}
}

// strictJSON is an independent statement of the JSON rules, built on
// encoding/json: b is one UTF-8 JSON value, nesting at most maxDepth
// arrays and objects, with no key twice in any object, case ignored.
func strictJSON(b []byte) error {
	if !utf8.Valid(b) || !json.Valid(b) {
		return errors.New("not UTF-8 JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type level struct {
		object  bool
		keys    []string
		wantKey bool
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			if key, ok := tok.(string); ok && top.object && top.wantKey {
				for _, k := range top.keys {
					if strings.EqualFold(k, key) {
						return fmt.Errorf("key %q twice", key)
					}
				}
				top.keys = append(top.keys, key)
				top.wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxDepth {
				return errors.New("too deep")
			}
			stack = append(stack, &level{object: tok == json.Delim('{'), wantKey: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true // a value ended: a key comes next
		}
	}
}

func TestCheckJSONAgreesWithStrictJSON(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `""`, `0`, `-0.0e-0`, `true`, `null`, ` {"a" : [1, {"b":null}] } `,
		`{"a":1,"b":{"a":2}}`, `{"a":1,"A":2}`, `{"a":{"b":1,"B":2}}`, `[{"a":1},{"a":1}]`,
		`{"\u00e9":1,"\u00c9":2}`, `{"k":1,"\u212a":2}`, `{"\ud800":1,"\udc00":2}`,
		`{"a" 1}`, `{"a":1,}`, `{1:1}`, `[1 2]`, `"\u00"`, "\"\t\"", `01`, `1e`, `.5`, `+1`,
		"\"\xff\"", `nul`, `[`, `]`, ``, ` `, `1 2`, `{"a":1}}`,
		strings.Repeat("[", 256) + strings.Repeat("]", 256),
		strings.Repeat("[", 257) + strings.Repeat("]", 257),
		strings.Repeat(`{"a":`, 256) + `0` + strings.Repeat("}", 256),
	} {
		// DecodeSocket refuses white space before a payload, so checkJSON
		// never sees any.
		got := checkJSON([]byte(strings.TrimLeft(s, " ")))
		want := strictJSON([]byte(s))
		if (got == nil) != (want == nil) {
			t.Errorf("checkJSON(%.40q) = %v, strictJSON: %v", s, got, want)
		}
	}
}

func ExampleDecodeSocket() {
	p, err := DecodeSocket([]byte(`2/admin,12["join","lobby"]`), 1<<20)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Namespace, p.AckID, p.Event, string(p.Args[0]))
	// Output: /admin 12 join "lobby"
}

func ExampleAppendPayload() {
	ping := AppendEngine(nil, EnginePing, nil)
	event := AppendEvent(nil, "chat", json.RawMessage(`{"msg":"hi"}`))
	fmt.Printf("%q\n", AppendPayload(nil, [][]byte{event, ping}))
	// Output: "42[\"chat\",{\"msg\":\"hi\"}]\x1e2"
}

func BenchmarkAppendEvent(b *testing.B) {
	arg := json.RawMessage(`{"type":"chat","channel":"lobby","user":"alice","msg":{"text":"hello, world"}}`)
	buf := make([]byte, 0, 256)
	b.Run("one argument", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendEvent(buf[:0], "chat", arg)
		}
	})
	b.Run("escaped name", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendEvent(buf[:0], "a \"quoted\" name", arg)
		}
	})
}

func BenchmarkDecodeSocket(b *testing.B) {
	for _, tc := range []struct{ name, in string }{
		{"join with ack", `212["join","lobby"]`},
		{"custom event", `2["order",{"id":"x1","items":[{"sku":"a","n":1},{"sku":"b","n":2}],"note":"leave at the door"}]`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := DecodeSocket(in, testMax); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// base64Packet is a binary packet as a polling payload carries it.
func base64Packet(data []byte) []byte {
	return append([]byte{binaryPrefix}, base64.StdEncoding.EncodeToString(data)...)
}

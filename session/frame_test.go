package session

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushgrid/pushgrid/internal/jsonstr"
)

func TestDecodeFrame(t *testing.T) {
	cases := []struct {
		in      string
		typ     string
		channel string
		user    string
		msg     string
		id      string
		code    Code
	}{
		{in: `{"type":"join","channel":"lobby"}`, typ: "join", channel: "lobby"},
		{in: `{"type":"chat","channel":"a","msg":{"x":[1,2]},"id":7}`, typ: "chat", channel: "a", msg: `{"x":[1,2]}`, id: "7"},
		{in: " {\"type\":\"x\",\"id\":\"abc\"}\r\n", typ: "x", id: `"abc"`},
		{in: `{"type":"ping","id":null}`, typ: "ping"},
		{in: `{ "type" : "chat" , "channel" : "a" , "msg" : [ 1 , -2.5e+3 , true , false , null , "\u00e9\n" ] }`,
			typ: "chat", channel: "a", msg: `[ 1 , -2.5e+3 , true , false , null , "\u00e9\n" ]`},
		{in: `{"type":"j\u006fin","channel":"\u006cobby","user":"\ud83d\ude00"}`, typ: "join", channel: "lobby", user: "\U0001F600"},
		{in: `{"type":"x","msg":{"a":1,"b":{"a":2}}}`, typ: "x", msg: `{"a":1,"b":{"a":2}}`},
		{in: `not json`, code: CodeBadRequest},
		{in: `[1,2]`, code: CodeBadRequest},
		{in: `"join"`, code: CodeBadRequest},
		{in: `null`, code: CodeBadRequest},
		{in: `{}`, code: CodeBadRequest},
		{in: `{"type":5}`, code: CodeBadRequest},
		{in: `{"type":""}`, code: CodeBadRequest},
		{in: `{"type":"join","id":{"a":1}}`, code: CodeBadRequest},
		{in: `{"type":null,"id":3}`, id: "3", code: CodeBadRequest},
		{in: `{"type":"join","channel":5,"id":"q"}`, id: `"q"`, code: CodeBadChannel},
		{in: `{"type":"join","channel":"a","user":true}`, code: CodeBadRequest},
		{in: `{"type":"join"`, code: CodeBadRequest},
		{in: `{"type":"join"} {}`, code: CodeBadRequest},
		{in: "\v{\"type\":\"ping\"}", code: CodeBadRequest},
		{in: `{"type":"x","msg":01}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":1.}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":-}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":"\x"}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":"\u12"}`, code: CodeBadRequest},
		{in: "{\"type\":\"x\",\"msg\":\"tab\there\"}", code: CodeBadRequest},
		{in: "{\"type\":\"x\",\"msg\":\"\xff\"}", code: CodeBadRequest},
		{in: `{"type":"x","msg":[1,]}`, code: CodeBadRequest},
		{in: `{"type":"x",}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":tru}`, code: CodeBadRequest},
		{in: `{"type":"x","msg":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, code: CodeBadRequest},
		// A key twice, or twice but for case, at any depth; a case variant
		// of a protocol key at the top. The id is echoed when there is
		// one; not when it is itself twice: which one would it be?
		{in: `{"type":"join","type":"chat","channel":"c"}`, code: CodeBadRequest},
		{in: `{"type":"chat","channel":"lobby","msg":0,"id":1,"id":2}`, code: CodeBadRequest},
		{in: `{"type":"chat","channel":"lobby","user":"a","msg":0,"user":"admin"}`, code: CodeBadRequest},
		{in: `{"type":"refund","TYPE":"refund","id":1}`, id: "1", code: CodeBadRequest},
		{in: `{"type":"x","id":"a","msg":{"k":1,"K":2}}`, id: `"a"`, code: CodeBadRequest},
		{in: `{"type":"x","ID":"a","id":"b"}`, code: CodeBadRequest},
		{in: `{"TYPE":"ping"}`, code: CodeBadRequest},
		{in: `{"type":"chat","Channel":"a","channel":"b"}`, code: CodeBadRequest},
		{in: `{"type":"order","ID":1}`, code: CodeBadRequest},
		{in: `{"type":"x","m\u0073g":1,"msg":2}`, code: CodeBadRequest},
		{in: `{"type":"x","mſg":1}`, code: CodeBadRequest},                       // ſ folds to s
		{in: `{"type":"x","msg":{"a":1,"A":2}}`, code: CodeBadRequest},           // nested case variant
		{in: `{"type":"x","msg":[{"k":1},{"k":1,"k":2}]}`, code: CodeBadRequest}, // nested duplicate
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			in := []byte(c.in)
			f, err := DecodeFrame(in)
			if string(in) != c.in {
				t.Fatalf("the decoder changed its input to %q", in)
			}
			if c.code != "" {
				if err == nil || err.Code != c.code {
					t.Fatalf("error %v, want code %s", err, c.code)
				}
			} else if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if err == nil && (f.Type != c.typ || f.Channel != c.channel || f.User != c.user || string(f.Msg) != c.msg) {
				t.Fatalf("got type %q channel %q user %q msg %q", f.Type, f.Channel, f.User, f.Msg)
			}
			if string(f.ID) != c.id {
				t.Fatalf("id %q, want %q", f.ID, c.id)
			}
		})
	}
}

// TestManyKeys: duplicates among thousands of keys are found, in linear
// time (a quadratic scan of this frame would take seconds).
func TestManyKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"type":"x","msg":{`)
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, `"k%d":0,`, i)
	}
	b.WriteString(`"K9999":1}}`)
	if _, err := DecodeFrame([]byte(b.String())); err == nil || !strings.Contains(err.Msg, "K9999") {
		t.Fatalf("got %v, want the case variant of k9999 refused", err)
	}
}

func TestServerFramesAreJSON(t *testing.T) {
	frames := [][]byte{
		encodeWelcome("c1", "n1", "alice"),
		encodeAnswer("joined", "lobby", json.RawMessage(`"x"`)),
		encodeControl("lobby", "bob", "left"),
		encodeChat("lobby", "bob", nil),
		encodeChat("lobby", "bob", json.RawMessage(`{"a":[1, 2]}`)),
		encodeError(&Error{CodeBadRequest, "quote \" back\\slash \n\x01 bad\xff"}, json.RawMessage(`12`)),
		encodeReply(json.RawMessage(`1`), []byte(`{"ok":true}`)),
		encodeReply(json.RawMessage(`1`), []byte("plain text\n")),
		encodeReply(json.RawMessage(`1`), nil),
	}
	for _, b := range frames {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	var e map[string]any
	_ = json.Unmarshal(frames[5], &e)
	if e["msg"] != "quote \" back\\slash \n\x01 bad\uFFFD" || e["id"] != 12.0 {
		t.Errorf("error frame round trip: %#v", e)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "tab\t", "\u2028", "émoji 🎉", "\x00\x1f", "<&>"} {
		var back string
		if err := json.Unmarshal(jsonstr.Append(nil, s), &back); err != nil || back != s {
			t.Errorf("%q: got %q, %v", s, back, err)
		}
	}
}

// FuzzDecodeFrame: the decoder never panics and never changes its input;
// it accepts exactly the UTF-8 JSON objects with a string type and no key
// twice in any object (case ignored), reading the fields as encoding/json
// does; and every frame the server builds from what it accepts is valid
// JSON with each key once.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","channel":"lobby"}`,
		`{"type":"chat","channel":"lobby","msg":"hi","id":1}`,
		`{"type":"leave","channel":"a.b"}`,
		`{"type":"ping"}`,
		`{"type":"order","id":"x","items":[1,2,3]}`,
		`{"type":"join","channel":"@alice","user":"alice"}`,
		`{"type":7}`, `[]`, `{`, `null`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		fr, err := DecodeFrame(data)
		if !bytes.Equal(in, data) {
			t.Fatalf("DecodeFrame changed its input %q to %q", in, data)
		}
		strict := strictCheck(data)
		if err != nil {
			if err.Code != CodeBadRequest && err.Code != CodeBadChannel {
				t.Fatalf("unexpected code %s", err.Code)
			}
			if strict == nil && semanticProblem(data) == "" {
				t.Fatalf("refused %q (%v), which is a valid frame", data, err)
			}
			if fr.ID != nil && !json.Valid(fr.ID) {
				t.Fatalf("invalid id %q echoed", fr.ID)
			}
			return
		}
		if strict != nil {
			t.Fatalf("accepted %q: %v", data, strict)
		}
		var slow struct {
			Type    string          `json:"type"`
			Channel string          `json:"channel"`
			User    string          `json:"user"`
			Msg     json.RawMessage `json:"msg"`
		}
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("accepted %q, encoding/json refuses: %v", data, err)
		}
		if fr.Type == "" || fr.Type != slow.Type || fr.Channel != slow.Channel || fr.User != slow.User {
			t.Fatalf("%q: decoded %q %q %q, encoding/json %q %q %q", data, fr.Type, fr.Channel, fr.User, slow.Type, slow.Channel, slow.User)
		}
		if (fr.Msg != nil || slow.Msg != nil) && !bytes.Equal(fr.Msg, slow.Msg) {
			t.Fatalf("%q: msg %q, encoding/json %q", data, fr.Msg, slow.Msg)
		}
		built := [][]byte{
			fr.Raw, // custom frames go to backends as they came
			encodeChat("c", "u", fr.Msg),
			encodeError(&Error{CodeBadRequest, fr.Type}, fr.ID),
			encodeAnswer("joined", "c", fr.ID),
			encodePong(fr.ID),
			encodeReply(fr.ID, fr.Msg),
			encodeReply(fr.ID, fr.Raw),
		}
		for _, b := range built {
			if err := strictCheck(b); err != nil {
				t.Fatalf("frame built from %q: %q: %v", data, b, err)
			}
		}
	})
}

// strictCheck is an independent check of what the decoder must enforce,
// built on encoding/json's tokenizer: b is one UTF-8 JSON object, with no
// key twice in any object, case ignored.
func strictCheck(b []byte) error {
	if !utf8.Valid(b) || !json.Valid(b) {
		return fmt.Errorf("not UTF-8 JSON")
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type level struct {
		object bool
		keys   []string
		key    bool // the next string token is a key
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
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &level{object: v == '{', key: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				for _, k := range top.keys {
					if strings.EqualFold(k, v) {
						return fmt.Errorf("keys %q and %q", k, v)
					}
				}
				top.keys = append(top.keys, v)
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// semanticProblem says why a frame that passes strictCheck is still not
// a frame, by encoding/json's reading, or "" if it is one.
func semanticProblem(b []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return "not an object"
	}
	for k := range m {
		for _, p := range []string{"type", "channel", "user", "msg", "id"} {
			if k != p && strings.EqualFold(k, p) {
				return "case variant of " + p
			}
		}
	}
	isString := func(raw json.RawMessage) bool { var s string; return json.Unmarshal(raw, &s) == nil && raw[0] == '"' }
	if t, ok := m["type"]; !ok || !isString(t) || string(t) == `""` {
		return "type"
	}
	if id, ok := m["id"]; ok && string(id) != "null" && !isString(id) {
		var n json.Number
		if json.Unmarshal(id, &n) != nil {
			return "id"
		}
	}
	for _, k := range []string{"channel", "user"} {
		if v, ok := m[k]; ok && !isString(v) {
			return k
		}
	}
	depth, deepest := 0, 0
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	if deepest > maxDepth+1 { // the frame itself is not counted by maxDepth
		return "deep"
	}
	return ""
}

func BenchmarkDecodeFrame(b *testing.B) {
	for _, in := range []string{
		`{"type":"join","channel":"lobby"}`,
		`{"type":"chat","channel":"lobby","msg":{"text":"hello there","n":12},"id":7}`,
		`{"type":"order","id":"a1","items":[{"sku":"x-1","qty":2},{"sku":"y-2","qty":1}],"note":"ring twice"}`,
	} {
		b.Run(in[9:13], func(b *testing.B) {
			data := []byte(in)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeFrame(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

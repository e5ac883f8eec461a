package session

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestDecodeFrame(t *testing.T) {
	cases := []struct {
		in      string
		typ     string
		channel string
		id      string
		code    Code
	}{
		{`{"type":"join","channel":"lobby"}`, "join", "lobby", "", ""},
		{`{"type":"chat","channel":"a","msg":{"x":[1,2]},"id":7}`, "chat", "a", "7", ""},
		{` {"type":"x","id":"abc"} `, "x", "", `"abc"`, ""},
		{`{"type":"ping","id":null}`, "ping", "", "", ""},
		{`not json`, "", "", "", CodeBadRequest},
		{`[1,2]`, "", "", "", CodeBadRequest},
		{`"join"`, "", "", "", CodeBadRequest},
		{`null`, "", "", "", CodeBadRequest},
		{`{}`, "", "", "", CodeBadRequest},
		{`{"type":5}`, "", "", "", CodeBadRequest},
		{`{"type":""}`, "", "", "", CodeBadRequest},
		{`{"type":"join","id":{"a":1}}`, "", "", "", CodeBadRequest},
		{`{"type":null,"id":3}`, "", "", "3", CodeBadRequest},
		{`{"type":"join","channel":5,"id":"q"}`, "join", "", `"q"`, CodeBadChannel},
		{`{"type":"join","channel":"a","user":true}`, "join", "a", "", CodeBadRequest},
		{`{"type":"join"`, "", "", "", CodeBadRequest},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			f, err := DecodeFrame([]byte(c.in))
			if c.code != "" {
				if err == nil || err.Code != c.code {
					t.Fatalf("error %v, want code %s", err, c.code)
				}
			} else if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if err == nil && (f.Type != c.typ || f.Channel != c.channel) {
				t.Fatalf("got type %q channel %q", f.Type, f.Channel)
			}
			if string(f.ID) != c.id {
				t.Fatalf("id %q, want %q", f.ID, c.id)
			}
		})
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
		if err := json.Unmarshal(appendString(nil, s), &back); err != nil || back != s {
			t.Errorf("%q: got %q, %v", s, back, err)
		}
	}
}

// FuzzDecodeFrame: the decoder never panics, accepts exactly the objects
// with a string type, and what it accepts re-encodes into valid frames.
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
		// The fast path agrees with encoding/json wherever it decides.
		if flat, ok := decodeFlat(data); ok {
			var slow wireFrame
			if err := json.Unmarshal(data, &slow); err != nil {
				t.Fatalf("fast path accepted %q, encoding/json refuses: %v", data, err)
			}
			if string(flat.Type) != string(slow.Type) || string(flat.Channel) != string(slow.Channel) ||
				string(flat.User) != string(slow.User) || string(flat.Msg) != string(slow.Msg) || string(flat.ID) != string(slow.ID) {
				t.Fatalf("%q: fast %+v, encoding/json %+v", data, flat, slow)
			}
		}
		if s, ok := jsonString(data); ok {
			var slow string
			if err := json.Unmarshal(data, &slow); err != nil || slow != s {
				t.Fatalf("jsonString(%q) = %q, encoding/json %q %v", data, s, slow, err)
			}
		}
		fr, err := DecodeFrame(data)
		if err != nil {
			if err.Code != CodeBadRequest && err.Code != CodeBadChannel {
				t.Fatalf("unexpected code %s", err.Code)
			}
			return
		}
		if fr.Type == "" {
			t.Fatal("accepted a frame without type")
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if fr.ID != nil && !json.Valid(fr.ID) {
			t.Fatalf("invalid id %q", fr.ID)
		}
		out := encodeChat("c", "u", fr.Msg)
		if !json.Valid(out) {
			t.Fatalf("chat built from %q is not JSON: %q", data, out)
		}
		if e := encodeError(&Error{CodeBadRequest, fr.Type}, fr.ID); !json.Valid(e) || !utf8.Valid(e) {
			t.Fatalf("error frame not valid JSON/UTF-8: %q", e)
		}
	})
}

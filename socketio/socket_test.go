package socketio

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNativeFrame(t *testing.T) {
	marker := []byte(`"\u001fNONCE:`)
	cases := []struct {
		packet string
		want   string // "" when refused
	}{
		{`2["join","room"]`, `{"type":"join","channel":"room"}`},
		{`27["join","room"]`, `{"id":"\u001fNONCE:7","type":"join","channel":"room"}`},
		{`2["leave","room"]`, `{"type":"leave","channel":"room"}`},
		{`2["chat","room","hi"]`, `{"type":"chat","channel":"room","msg":"hi"}`},
		{`2["chat","room",{"a":1}]`, `{"type":"chat","channel":"room","msg":{"a":1}}`},
		{`2["message",{"type":"order","n":1}]`, `{"type":"order","n":1}`},
		{`2["order",{"n":1}]`, `{"type":"order","n":1}`},
		{`2["order",{}]`, `{"type":"order"}`},
		{`2["ping"]`, `{"type":"ping"}`},
		{`2["join",{"channel":"room"}]`, `{"type":"join","channel":"room"}`},
		{`2["message","text"]`, ``},
		{`2["order",1]`, ``},
		{`2["join","a","b"]`, ``},
		{`2["chat","room","hi","more"]`, ``},
	}
	for _, c := range cases {
		p, err := DecodeSocket([]byte(c.packet), 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", c.packet, err)
		}
		got, err := nativeFrame(p, marker)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: made %s, want a refusal", c.packet, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s: %s, %v; want %s", c.packet, got, err, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: %s is not JSON", c.packet, got)
		}
	}
}

func TestPacketOf(t *testing.T) {
	marker := []byte(`"\u001fNONCE:`)
	cases := []struct{ payload, want string }{
		{`{"type":"welcome","conn":"c"}`, `42["welcome",{"type":"welcome","conn":"c"}]`},
		{`{"n":1,"type":"news"}`, `42["news",{"n":1,"type":"news"}]`},
		// A history channel's frames: the seq first.
		{`{"seq":12,"type":"news","n":1}`, `42["news",{"seq":12,"type":"news","n":1}]`},
		{`{"seq":12,"n":1}`, `42["message",{"seq":12,"n":1}]`},
		{`{"seq":12,"type":"connect"}`, `42["message",{"seq":12,"type":"connect"}]`},
		{`{"type":"connect"}`, `42["message",{"type":"connect"}]`}, // a reserved name is not emitted
		{`{"type":7}`, `42["message",{"type":7}]`},
		{`[1,2]`, `42["message",[1,2]]`},
		{`plain "text"`, `42["message","plain \"text\""]`},
		{`{"type":"joined","channel":"a","id":"\u001fNONCE:7"}`, `437[{"type":"joined","channel":"a"}]`},
		{`{"type":"reply","id":"\u001fNONCE:8","msg":{"ok":true}}`, `438[{"type":"reply","msg":{"ok":true}}]`},
		// Another session's marker, or a chat that quotes one: an event.
		{`{"type":"joined","channel":"a","id":"\u001fOTHER:7"}`, `42["joined",{"type":"joined","channel":"a","id":"\u001fOTHER:7"}]`},
	}
	for _, c := range cases {
		if got := packetOf([]byte(c.payload), marker); string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.payload, got, c.want)
		}
	}
}

func TestTranslateFrames(t *testing.T) {
	es := &engineSession{}
	var buf []byte
	long := `{"type":"big","s":"` + strings.Repeat("x", 300) + `"}`
	for _, p := range []string{`{"type":"a"}`, long, `{"type":"b"}`} {
		buf = wsFrame(buf, []byte(p))
	}
	packets, err := es.translate(buf)
	if err != nil || len(packets) != 3 {
		t.Fatalf("%d packets, %v", len(packets), err)
	}
	if string(packets[1]) != `42["big",`+long+`]` {
		t.Fatalf("%s", packets[1])
	}
	if _, err := es.translate(buf[:len(buf)-1]); err == nil {
		t.Fatal("a cut frame translated")
	}
}

// TestReadConnectAuth: the CONNECT payload is read as encoding/json reads
// it into the struct it replaced, on the payloads the checks let through.
func TestReadConnectAuth(t *testing.T) {
	cases := []struct {
		data        string
		token, user string // "-": absent
		err         bool
	}{
		{``, "-", "-", false},
		{`null`, "-", "-", false},
		{`{}`, "-", "-", false},
		{`{"token":"t"}`, "t", "-", false},
		{` { "user" : "alice" , "token":"x\u00e9\n" } `, "xé\n", "alice", false},
		{`{"USER":"bob","other":[1,{"user":5}]}`, "-", "bob", false},
		{`{"token":null,"user":"u"}`, "-", "u", false},
		{`{"token":5}`, "", "", true},
		{`{"user":{"a":1}}`, "", "", true},
		{`"token"`, "", "", true},
		{`[1]`, "", "", true},
		{`{"token":"a",}`, "", "", true},
		{`{"token":"a","Token":"b"}`, "", "", true}, // a key twice: refused as in every payload
		{`{"token":"a"} x`, "", "", true},
	}
	str := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	for _, c := range cases {
		got, err := readConnectAuth([]byte(c.data))
		if (err != nil) != c.err {
			t.Errorf("%s: err %v, want error %v", c.data, err, c.err)
			continue
		}
		if !c.err && (str(got.Token) != c.token || str(got.User) != c.user) {
			t.Errorf("%s: token %q user %q, want %q %q", c.data, str(got.Token), str(got.User), c.token, c.user)
		}
	}
}

// FuzzConnectAuth: whatever readConnectAuth accepts, encoding/json reads
// to the same two strings.
func FuzzConnectAuth(f *testing.F) {
	for _, s := range []string{`{"token":"t"}`, `{"user":"a\u00e9","x":[1,2]}`, `null`, `{"token":null}`, `{"Token":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readConnectAuth(data)
		if err != nil || len(bytes.TrimSpace(data)) == 0 { // no auth, which json.Unmarshal calls an error
			return
		}
		var want struct {
			Token *string `json:"token"`
			User  *string `json:"user"`
		}
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("%q: read %+v, encoding/json refuses it: %v", data, got, err)
		}
		eq := func(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
		if !eq(got.Token, want.Token) || !eq(got.User, want.User) {
			t.Fatalf("%q: token/user differ from encoding/json's", data)
		}
	})
}

package socketio

import (
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

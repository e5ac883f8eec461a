package session

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestSpliceSeq(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{}`, `{"seq":7}`},
		{`{ }`, `{"seq":7 }`},
		{`{"a":1}`, `{"seq":7,"a":1}`},
		{`[1,2]`, `[1,2]`},
		{`"text"`, `"text"`},
		{`42`, `42`},
		{`{"a":1`, `{"a":1`}, // not JSON: as it is
		// A payload's own seq gives way to the store's, however spelled.
		{`{"seq":1}`, `{"seq":7}`},
		{`{"a":1,"seq":"x","b":{"seq":2}}`, `{"seq":7,"a":1,"b":{"seq":2}}`},
		{`{"seq":1, "a":[1,{"seq":3}] ,"seq":2}`, `{"seq":7,"a":[1,{"seq":3}]}`},
		{`{"s\u0065q":1,"a":"seq"}`, `{"seq":7,"a":"seq"}`},
		{`{"a":"seq"}`, `{"seq":7,"a":"seq"}`},
	}
	for _, c := range cases {
		if got := string(spliceSeq([]byte(c.in), 7)); got != c.want {
			t.Errorf("spliceSeq(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// FuzzSpliceSeq: a JSON object comes out valid, with one top-level seq,
// the store's, first, and its other members as they were.
func FuzzSpliceSeq(f *testing.F) {
	for _, s := range []string{`{}`, `{"seq":1}`, `{"a":1,"seq":2,"b":[{"seq":3}]}`, `{"s\u0065q":1}`, ` {"x":"seq"} `, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := spliceSeq(in, 99)
		var before map[string]any
		if len(in) == 0 || in[0] != '{' || json.Unmarshal(in, &before) != nil {
			if string(out) != string(in) {
				t.Fatalf("not an object, changed: %q -> %q", in, out)
			}
			return
		}
		if seq, ok := frameSeq(out); !ok || seq != 99 {
			t.Fatalf("%q -> %q: seq not first", in, out)
		}
		var after map[string]any
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("%q -> %q: %v", in, out, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		seqs := 0
		_, _ = dec.Token()
		for dec.More() {
			name, _ := dec.Token()
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			if name == "seq" {
				seqs++
			}
		}
		if seqs != 1 {
			t.Fatalf("%q -> %q: %d seq members", in, out, seqs)
		}
		delete(before, "seq")
		delete(after, "seq")
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%q -> %q: members changed", in, out)
		}
	})
}

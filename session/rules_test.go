package session

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, channel string
		want             bool
	}{
		{"news", "news", true},
		{"news", "news.eu", false},
		{"news.*", "news.eu", true},
		{"news.*", "news", false},
		{"news.*", "news.eu.fr", false},
		{"news.>", "news.eu", true},
		{"news.>", "news.eu.fr", true},
		{"news.>", "news", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"*", "a", true},
		{"*", "a.b", false},
		{"*.b.*", "a.b.c", true},
		{"*.b.*", "a.x.c", false},
		{"room:1.*", "room:1.x", true},
		{"@alice", "@alice", true},
	}
	for _, c := range cases {
		if got := MustPattern(c.pattern).Match(c.channel); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.pattern, c.channel, got, c.want)
		}
	}
}

func TestPatternOverlaps(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"news.>", "news.eu", true},
		{"news.>", "news", false},
		{"news.*", "news.eu.fr", false},
		{"news.*", "*.eu", true},
		{">", "a.b", true},
		{"a.*.c", "a.b.*", true},
		{"a.*.c", "a.b.d", false},
		{"a.>", "b.>", false},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
	}
	for _, c := range cases {
		a, b := MustPattern(c.a), MustPattern(c.b)
		if got := a.Overlaps(b); got != c.want {
			t.Errorf("%q overlaps %q: %v, want %v", c.a, c.b, got, c.want)
		}
		if got := b.Overlaps(a); got != c.want {
			t.Errorf("%q overlaps %q: %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestParsePatternRefuses(t *testing.T) {
	for _, s := range []string{"", ".", "a.", ".a", "a..b", "a.>.b", ">.a", "a b", "a.**", "a*", "news.>>", strings.Repeat("a", 129), "é"} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("ParsePattern(%q) accepted", s)
		}
	}
}

func TestRulesOverlappingHistoryRefused(t *testing.T) {
	a, b, c := DefaultRule(), DefaultRule(), DefaultRule()
	a.Pattern, a.History = MustPattern("news.>"), 10
	b.Pattern, b.History = MustPattern("chat.*"), 10
	c.Pattern, c.History = MustPattern("*.eu"), 10
	err := checkRules([]Rule{a, b, c})
	if err == nil || !strings.Contains(err.Error(), "channels[2].pattern") || !strings.Contains(err.Error(), "channels[0].pattern") {
		t.Fatalf("got %v, want channels[2] overlapping channels[0]", err)
	}
	c.History = 0 // overlapping rules without history are fine: the first applies
	if err := checkRules([]Rule{a, b, c}); err != nil {
		t.Fatal(err)
	}
}

// rulesHub is a one-node hub with rules.
func rulesHub(t *testing.T, rules []Rule) *Hub {
	t.Helper()
	h, _, _ := newTestHub(t, Config{Rules: rules})
	return h
}

func rule(pattern string, change func(*Rule)) Rule {
	r := DefaultRule()
	r.Pattern = MustPattern(pattern)
	if change != nil {
		change(&r)
	}
	return r
}

func TestJoinRules(t *testing.T) {
	h := rulesHub(t, []Rule{
		rule("open.>", nil),
		rule("members.>", func(r *Rule) { r.Join = JoinUser }),
		rule("paid.>", func(r *Rule) { r.Join = JoinClaim }),
		rule("system.>", func(r *Rule) { r.Join = JoinNone }),
	})
	anon := &fakeTransport{}
	a, _ := h.Connect(anon, Identity{}, netip.Addr{})
	named := &fakeTransport{}
	n, _ := h.Connect(named, Identity{User: "nina"}, netip.Addr{})
	claimed := &fakeTransport{}
	c, _ := h.Connect(claimed, Identity{User: "carl", Verified: true, Channels: []Pattern{MustPattern("paid.gold.*")}}, netip.Addr{})

	cases := []struct {
		c       *Conn
		tr      *fakeTransport
		channel string
		allowed bool
	}{
		{a, anon, "open.x", true},
		{a, anon, "members.x", false},
		{n, named, "members.x", true},
		{n, named, "paid.gold.x", false},
		{c, claimed, "paid.gold.x", true},
		{c, claimed, "paid.silver.x", false},
		{c, claimed, "system.x", false},
		{n, named, "other", true}, // no rule: the default, any
	}
	for i, k := range cases {
		h.Receive(k.c, []byte(`{"type":"join","channel":"`+k.channel+`","id":`+strconv.Itoa(i)+`}`))
		want := `{"type":"joined","channel":"` + k.channel + `","id":` + strconv.Itoa(i) + `}`
		if !k.allowed {
			want = `"code":"forbidden"`
		}
		waitFrame(t, k.tr, want)
		if member := contains(k.c.Channels(), k.channel); member != k.allowed {
			t.Errorf("%s joining %s: member %v, want %v", k.c.User(), k.channel, member, k.allowed)
		}
	}
}

func TestVerifiedUserIgnoresJoinUser(t *testing.T) {
	h := rulesHub(t, nil)
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "vera", Verified: true}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"x","user":"mallory"}`))
	waitFrame(t, tr, `{"type":"joined","channel":"x"}`)
	if c.User() != "vera" {
		t.Fatalf("user %q after a join naming mallory", c.User())
	}
}

func TestChatNobody(t *testing.T) {
	h := rulesHub(t, []Rule{rule("alerts.>", func(r *Rule) { r.Chat = ChatNobody })})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "u"}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"join","channel":"alerts.eu"}`))
	h.Receive(c, []byte(`{"type":"chat","channel":"alerts.eu","msg":"hi","id":7}`))
	waitFrame(t, tr, `{"type":"error","code":"forbidden"`)
	h.DeliverChannel("alerts.eu", []byte(`{"from":"backend"}`))
	waitFrame(t, tr, `{"from":"backend"}`)
	for _, f := range tr.frames() {
		if strings.Contains(f, `"type":"chat"`) {
			t.Fatalf("a client's chat went out: %s", f)
		}
	}
	// A chat to a channel it has not joined refuses the same, and joins
	// nothing.
	h.Receive(c, []byte(`{"type":"chat","channel":"alerts.us","msg":"hi"}`))
	waitCount(t, tr, `"code":"forbidden"`, 2)
	if contains(c.Channels(), "alerts.us") {
		t.Fatal("a refused chat joined the channel")
	}
}

func TestAnnounce(t *testing.T) {
	h := rulesHub(t, []Rule{
		rule("quiet.>", func(r *Rule) { r.Announce = false }),
		rule("small.>", func(r *Rule) { r.AnnounceLimit = 2 }),
	})
	var trs []*fakeTransport
	var conns []*Conn
	for i := 0; i < 4; i++ {
		tr := &fakeTransport{}
		c, _ := h.Connect(tr, Identity{User: "u" + strconv.Itoa(i)}, netip.Addr{})
		trs, conns = append(trs, tr), append(conns, c)
	}
	for _, c := range conns {
		h.Receive(c, []byte(`{"type":"join","channel":"quiet.a"}`))
		h.Receive(c, []byte(`{"type":"join","channel":"small.a"}`))
	}
	h.Receive(conns[3], []byte(`{"type":"leave","channel":"quiet.a"}`))
	waitFrame(t, trs[3], `{"type":"left","channel":"quiet.a"}`)
	for _, f := range trs[0].frames() {
		if strings.Contains(f, `"channel":"quiet.a","user"`) {
			t.Fatalf("announce = false sent %s", f)
		}
	}
	// small.a: joins are told while the channel has at most 2 members
	// here: u0 sees u0's and u1's joins, none after.
	waitCount(t, trs[0], `{"type":"control","channel":"small.a"`, 2)
}

func TestRefresh(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	cfg := Config{Refresh: func(token string) (Identity, error) {
		switch token {
		case "good":
			return Identity{User: "rita", Expires: exp}, nil
		case "other":
			return Identity{User: "mallory"}, nil
		}
		return Identity{}, errors.New("signature is invalid")
	}}
	h, _, _ := newTestHub(t, cfg)
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "rita", Verified: true, Expires: time.Now().Add(time.Minute)}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"refresh","token":"good","id":1}`))
	waitFrame(t, tr, `{"type":"refreshed","exp":`+strconv.Itoa(int(exp.Unix()))+`,"id":1}`)
	h.Receive(c, []byte(`{"type":"refresh","token":"other","id":2}`))
	waitFrame(t, tr, `{"type":"error","code":"bad_token","msg":"the token is for another user","id":2}`)
	h.Receive(c, []byte(`{"type":"refresh","token":"forged","id":3}`))
	waitFrame(t, tr, `"code":"bad_token","msg":"signature is invalid","id":3}`)
	h.Receive(c, []byte(`{"type":"refresh","token":5,"id":4}`))
	waitFrame(t, tr, `"code":"bad_token","msg":"refresh needs a string token","id":4}`)
	if c.User() != "rita" {
		t.Fatalf("user %q", c.User())
	}

	// A node without token auth answers every refresh bad_token.
	h2, _, _ := newTestHub(t, Config{})
	tr2 := &fakeTransport{}
	c2, _ := h2.Connect(tr2, Identity{User: "u"}, netip.Addr{})
	h2.Receive(c2, []byte(`{"type":"refresh","token":"good"}`))
	waitFrame(t, tr2, `"code":"bad_token"`)
}

func TestTokenExpiry(t *testing.T) {
	h, _, _ := newTestHub(t, Config{Leeway: 50 * time.Millisecond})
	tr := &fakeTransport{}
	h.Connect(tr, Identity{User: "eve", Verified: true, Expires: time.Now().Add(50 * time.Millisecond)}, netip.Addr{})
	waitClosed(t, tr, CloseTokenExpired)
	if d := tr.closedWith(); d.Reason != "token expired" {
		t.Fatalf("reason %q", d.Reason)
	}
}

func TestRefreshPostponesExpiry(t *testing.T) {
	later := time.Now().Add(time.Hour)
	h, _, _ := newTestHub(t, Config{Refresh: func(string) (Identity, error) { return Identity{User: "eve", Expires: later}, nil }})
	tr := &fakeTransport{}
	c, _ := h.Connect(tr, Identity{User: "eve", Verified: true, Expires: time.Now().Add(300 * time.Millisecond)}, netip.Addr{})
	h.Receive(c, []byte(`{"type":"refresh","token":"t"}`))
	waitFrame(t, tr, `"type":"refreshed"`)
	// Past the first token's exp: the refresh must have moved the close.
	time.Sleep(600 * time.Millisecond)
	if d := tr.closedWith(); d != nil {
		t.Fatalf("closed with %v after a refresh", d)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

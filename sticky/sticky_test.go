package sticky

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixes([]string{"10.0.0.0/8", "192.168.1.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"plain peer", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's header ignored", "203.0.113.5:4000", []string{"1.2.3.4"}, "203.0.113.5"},
		{"trusted peer, one hop", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"right-most untrusted hop", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.7, 192.168.1.1"}, "198.51.100.7"},
		{"several headers", "10.1.2.3:80", []string{"6.6.6.6", "198.51.100.8, 10.9.9.9"}, "198.51.100.8"},
		{"all hops trusted", "10.1.2.3:80", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"no header from a proxy", "10.1.2.3:80", nil, "10.1.2.3"},
		{"garbage hop", "10.1.2.3:80", []string{"1.1.1.1, nonsense"}, "10.1.2.3"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"ipv6 trusted proxy", "[fd00::1]:443", []string{"2001:db8::9"}, "2001:db8::9"},
		{"mapped peer", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"mapped hop", "10.0.0.1:1", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, h := range c.xff {
				r.Header.Add("X-Forwarded-For", h)
			}
			if got := ClientIP(r, trusted); got.String() != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	if _, err := ParsePrefixes([]string{"10.0.0.0/8", "nonsense"}); err == nil {
		t.Fatal("accepted nonsense")
	}
	ps, err := ParsePrefixes([]string{"10.1.2.3/8", "::1"})
	if err != nil || ps[0].String() != "10.0.0.0/8" || ps[1].String() != "::1/128" {
		t.Fatalf("%v %v", ps, err)
	}
	if _, err := ParseMode("sometimes"); err == nil {
		t.Fatal("accepted a bad mode")
	}
}

// acceptor records which listener accepted connections from which address.
type acceptor struct {
	mu       sync.Mutex
	seen     map[string]map[int]int // source IP -> listener index -> count
	accepted chan string            // the source IP of each connection accepted
	wg       sync.WaitGroup
}

func serve(t testing.TB, ls []net.Listener) *acceptor {
	a := &acceptor{seen: map[string]map[int]int{}, accepted: make(chan string, 1)}
	for i, l := range ls {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				ip := c.RemoteAddr().(*net.TCPAddr).IP.String()
				a.mu.Lock()
				if a.seen[ip] == nil {
					a.seen[ip] = map[int]int{}
				}
				a.seen[ip][i]++
				a.mu.Unlock()
				c.Close()
				select {
				case a.accepted <- ip:
				default: // nobody waits: a connection the test did not make
				}
			}
		}()
	}
	t.Cleanup(func() { closeAll(ls); a.wg.Wait() })
	return a
}

// dialFrom connects to addr from src and waits until a listener of a
// accepted it. Connections are dialled one at a time, so the next one
// accepted is this one.
func dialFrom(t testing.TB, a *acceptor, addr, src string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case ip := <-a.accepted:
		if ip != src {
			t.Fatalf("dialled from %s, accepted a connection from %s", src, ip)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("connection from %s not accepted", src)
	}
}

// hashIP is what the steering program computes for a client address: the
// index of the worker, out of n, that its connections go to. It is the
// tests' oracle for the program.
func hashIP(ip netip.Addr, n int) int {
	ip = ip.Unmap()
	var a uint32
	if ip.Is4() {
		b := ip.As4()
		a = binary.BigEndian.Uint32(b[:])
	} else {
		b := ip.As16()
		for i := 0; i < 16; i += 4 {
			a ^= binary.BigEndian.Uint32(b[i:])
		}
	}
	return int((a * hashMul >> hashShift) % uint32(n))
}

var sources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}

func TestSteeringByClientIP(t *testing.T) {
	const n, tries = 4, 10
	ls, err := Listen(context.Background(), "127.0.0.1:0", n, ModeIP, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := Attach(ls); err != nil {
		t.Skipf("the kernel refuses reuseport programs here: %v", err)
	}
	a := serve(t, ls)
	addr := ls[0].Addr().String()
	for _, src := range sources {
		for i := 0; i < tries; i++ {
			dialFrom(t, a, addr, src)
		}
	}
	used := map[int]bool{}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, src := range sources {
		want := hashIP(netip.MustParseAddr(src), n)
		if len(a.seen[src]) != 1 || a.seen[src][want] != tries {
			t.Errorf("%s: accepted by %v, want all %d by listener %d", src, a.seen[src], tries, want)
		}
		used[want] = true
	}
	if len(used) < 2 {
		t.Errorf("8 addresses hash to one listener: %v", used)
	}
}

func TestSteeringIPv6(t *testing.T) {
	const n = 3
	ls, err := Listen(context.Background(), "[::1]:0", n, ModeIP, slog.Default())
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	a := serve(t, ls)
	for i := 0; i < 10; i++ {
		dialFrom(t, a, ls[0].Addr().String(), "::1")
	}
	want := hashIP(netip.MustParseAddr("::1"), n)
	a.mu.Lock()
	defer a.mu.Unlock()
	if got := a.seen["::1"]; len(got) != 1 || got[want] != 10 {
		t.Fatalf("::1 accepted by %v, want listener %d", got, want)
	}
}

func TestNoSteeringSpreads(t *testing.T) {
	ls, err := Listen(context.Background(), "127.0.0.1:0", 4, ModeNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := serve(t, ls)
	for _, src := range sources {
		for i := 0; i < 10; i++ {
			dialFrom(t, a, ls[0].Addr().String(), src)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, src := range sources {
		if len(a.seen[src]) > 1 {
			return
		}
	}
	t.Fatalf("every address stayed on one listener without steering: %v", a.seen)
}

func TestReattachAfterClose(t *testing.T) {
	ls, err := Listen(context.Background(), "127.0.0.1:0", 4, ModeIP, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := ls[0].Addr().String()
	_ = ls[3].Close()
	ls = ls[:3]
	if err := Attach(ls); err != nil {
		t.Skipf("attach refused: %v", err)
	}
	a := serve(t, ls)
	for _, src := range sources {
		for i := 0; i < 5; i++ {
			dialFrom(t, a, addr, src)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, src := range sources {
		want := hashIP(netip.MustParseAddr(src), 3)
		if a.seen[src][want] != 5 {
			t.Errorf("%s: %v, want all on %d", src, a.seen[src], want)
		}
	}
}

func TestOwner(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	if Owner("k", nil) != "" {
		t.Fatal("owner with no nodes")
	}
	count := map[string]int{}
	owners := map[string]string{}
	for i := 0; i < 3000; i++ {
		key := fmt.Sprintf("user-%d", i)
		o := Owner(key, nodes)
		if o != Owner(key, []string{"n3", "n1", "n2"}) {
			t.Fatal("owner depends on the order of nodes")
		}
		count[o]++
		owners[key] = o
	}
	for _, n := range nodes {
		if count[n] < 600 || count[n] > 1410 {
			t.Errorf("%s owns %d of 3000 keys", n, count[n])
		}
	}
	for key, o := range owners {
		after := Owner(key, []string{"n1", "n2"})
		if o != "n3" && after != o {
			t.Fatalf("%s moved from %s to %s though %s stayed", key, o, after, o)
		}
	}
}

// TestAcceptedKeepAlive: accepted sockets inherit the listener's keepalive,
// which Listen sets instead of Go setting it on every accept.
func TestAcceptedKeepAlive(t *testing.T) {
	ls, err := Listen(context.Background(), "127.0.0.1:0", 1, ModeNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(ls)
	client, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ls[0].Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ level, name, value int }{
		"SO_KEEPALIVE":  {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
		"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
		"TCP_KEEPCNT":   {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	}
	for name, o := range want {
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), o.level, o.name) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != o.value {
			t.Errorf("%s on an accepted socket = %d (%v), want %d", name, got, gerr, o.value)
		}
	}
}

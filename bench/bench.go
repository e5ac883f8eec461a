package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"

	"github.com/pushgrid/pushgrid/broker"
)

// Result is what a run measured.
type Result struct {
	Subs           int     `json:"subs"`
	Channels       int     `json:"channels"`
	Size           int     `json:"size"`
	Connected      int     `json:"connected"`
	ConnectErrors  int     `json:"connect_errors"`
	ConnectSeconds float64 `json:"connect_seconds"`
	// CPU seconds the connect phase took in the server (with Config.PID)
	// and in this load generator: on one machine they share the cores, so
	// the wall time of connects follows their sum.
	ConnectServerCPU float64 `json:"connect_server_cpu_seconds,omitempty"`
	ConnectClientCPU float64 `json:"connect_client_cpu_seconds"`
	// Control frames (joined/left announcements) the subscribers read
	// for the connect phase, counted once they stop coming (untimed):
	// work a server does for a join beyond answering it, which on one
	// machine costs the load generator too.
	ConnectControlFrames int64 `json:"connect_control_frames"`
	// Auth requests the load generator answered as the hook backend
	// (Config.Hook), during the connect phase.
	HookRequests int64 `json:"hook_requests,omitempty"`
	// Server memory (with Config.PID): resident set before the
	// connections, once they joined (at the end of Hold when there are no
	// steps), and the difference per connection.
	ServerRSSBefore int64   `json:"server_rss_before,omitempty"`
	ServerRSSJoined int64   `json:"server_rss_joined,omitempty"`
	RSSPerConn      float64 `json:"rss_per_conn,omitempty"`
	Steps           []Step  `json:"steps"`
	// Recovery is the recovery phase's figures (Config.Recover).
	Recovery *Recovery `json:"recovery,omitempty"`
}

// Step is one rate step.
type Step struct {
	Rate             float64 `json:"rate"` // 0: closed loop
	Seconds          float64 `json:"seconds"`
	Published        int64   `json:"published"`
	Expected         int64   `json:"expected"`
	Delivered        int64   `json:"delivered"`
	Lost             int64   `json:"lost"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	P50              float64 `json:"p50_ms"`
	P90              float64 `json:"p90_ms"`
	P99              float64 `json:"p99_ms"`
	Max              float64 `json:"max_ms"`
	Disconnects      int64   `json:"disconnects"`
	Errors           int64   `json:"errors"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	PerCPUSecond     float64 `json:"deliveries_per_server_cpu_second,omitempty"`
}

// payload layout: {"type":"bench","s":SEQ,"t":UNIXNANO,"p":"xxx..."}; the
// subscriber finds s and t without decoding JSON.
const minPayload = 64

var (
	seqKey    = []byte(`"s":`)
	storedKey = []byte(`"seq":`) // a history channel's seq, which the server puts first
	timeKey   = []byte(`"t":`)

	joinedType  = []byte(`"type":"joined"`)
	welcomeType = []byte(`"type":"welcome"`)
	controlType = []byte(`"type":"control"`)
	errorType   = []byte(`"type":"error"`)
)

func makePayload(seq int64, size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, `{"type":"bench","s":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"p":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

// intAfter reads the integer following key in b.
func intAfter(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	var n int64
	j := i + len(key)
	start := j
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + int64(b[j]-'0')
	}
	return n, j > start
}

// run is the state shared by the subscribers and the publisher.
type run struct {
	cfg               Config
	ring              []atomic.Int32 // deliveries of each in-flight seq (closed loop)
	want              []int32        // subscribers per channel
	done              chan struct{}  // a message reached all its subscribers
	subs              []*subscriber
	tokens            []string // subscriber i's token, with Config.AuthSecret
	disconnects, errs atomic.Int64
	controls          atomic.Int64 // control frames read
	dups              atomic.Int64 // missed messages received twice while recovering
	measuring         atomic.Bool
	// window is the step being measured; nil before the first.
	window atomic.Pointer[window]
}

// window is what one step measures: the deliveries of the seqs in
// [from, to), whenever they land. Its counts are its own, so that a
// delivery is counted in the step of its seq and no other: a subscriber
// reads the window once, and a step that opens a new one never counts
// what an old one's reader adds.
type window struct {
	from      int64
	to        atomic.Int64 // math.MaxInt64 while the step publishes
	delivered atomic.Int64
	lat       histogram
}

// openWindow starts measuring the seqs from from on.
func (r *run) openWindow(from int64) *window {
	w := &window{from: from}
	w.to.Store(math.MaxInt64)
	r.window.Store(w)
	return w
}

// holds says whether a delivery of seq is measured in w.
func (w *window) holds(seq int64) bool {
	return w != nil && seq >= w.from && seq < w.to.Load()
}

const ringSize = 1 << 16

type subscriber struct {
	r       *run
	channel int
	conn    *gws.Conn
	joined  chan struct{}
	isIn    atomic.Bool
	closed  atomic.Bool
	// lastStored is the last history seq the subscriber saw (the joined
	// answer's, then each message's); rec, while it recovers.
	lastStored atomic.Int64
	rec        *recovering
	// user is who a token or the hook names the subscriber, "" when it
	// sends no credentials. welcomed says the welcome frame named user:
	// the read loop sets it before it closes joined (Socket.IO: before it
	// closes welcome).
	user     string
	welcomed bool
	// failure is why the server refused the subscriber, set by the read
	// loop before it closes a failed channel (Socket.IO's).
	failure error
}

func (s *subscriber) OnOpen(*gws.Conn)             {}
func (s *subscriber) OnPing(c *gws.Conn, p []byte) { _ = c.WritePong(p) }
func (s *subscriber) OnPong(*gws.Conn, []byte)     {}
func (s *subscriber) OnClose(_ *gws.Conn, err error) {
	s.closed.Store(true)
	if s.isIn.Load() {
		s.r.disconnects.Add(1)
	}
}

func (s *subscriber) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	b := m.Bytes()
	if !s.isIn.Load() {
		switch {
		case bytes.Contains(b, joinedType):
			if seq, ok := intAfter(b, storedKey); ok {
				s.lastStored.Store(seq)
			}
			if s.rec != nil && bytes.Contains(b, []byte(`"recovered":true`)) {
				s.rec.recovered.Store(true)
			}
			s.isIn.Store(true)
			close(s.joined)
		case s.user != "" && bytes.Contains(b, welcomeType):
			s.welcomed = bytes.Contains(b, []byte(`"user":"`+s.user+`"`))
		}
		return
	}
	s.receive(b)
}

// receive takes a payload that came after the join: a message of the run,
// whose delivery is measured, or a control or an error frame, counted.
func (s *subscriber) receive(b []byte) {
	if bytes.HasPrefix(b[min(1, len(b)):], storedKey) {
		if stored, ok := intAfter(b, storedKey); ok {
			s.lastStored.Store(stored)
		}
	}
	seq, ok := intAfter(b, seqKey)
	if s.rec != nil {
		if ok {
			s.rec.take(seq, &s.r.dups)
		}
		return
	}
	if !ok {
		switch {
		case bytes.Contains(b, controlType):
			s.r.controls.Add(1)
		case bytes.Contains(b, errorType):
			s.r.errs.Add(1)
		}
		return
	}
	t, _ := intAfter(b, timeKey)
	r := s.r
	if w := r.window.Load(); w.holds(seq) {
		w.lat.record(time.Duration(time.Now().UnixNano() - t))
		w.delivered.Add(1)
	}
	if r.ring[seq%ringSize].Add(1) == r.want[int(seq)%len(r.want)] {
		select {
		case r.done <- struct{}{}:
		default:
		}
	}
}

// Run connects, runs every step, and reports. ctx bounds the whole run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, ring: make([]atomic.Int32, ringSize), want: make([]int32, cfg.Channels), done: make(chan struct{}, 1)}
	res := &Result{Subs: cfg.Subs, Channels: cfg.Channels, Size: cfg.Size}
	if cfg.AuthSecret != "" {
		tokens, err := signTokens(&cfg, time.Now().Add(tokenLifetime))
		if err != nil {
			return nil, err
		}
		r.tokens = tokens
	}
	var hook *hookBackend
	if cfg.Hook {
		h, err := startHook(cfg.NATS, broker.Subjects{Prefix: cfg.Prefix}.Auth())
		if err != nil {
			return nil, err
		}
		defer h.close()
		hook = h
	}
	if cfg.PID > 0 {
		res.ServerRSSBefore, _ = processRSS(cfg.PID)
	}
	defer r.closeAll()
	err := r.connect(ctx, res)
	if hook != nil {
		res.HookRequests = hook.answered.Load()
	}
	if err != nil {
		return res, err
	}
	idleRSS := func() {
		if cfg.PID > 0 {
			res.ServerRSSJoined, _ = processRSS(cfg.PID)
			res.RSSPerConn = float64(res.ServerRSSJoined-res.ServerRSSBefore) / float64(res.Connected)
		}
	}
	if cfg.Recover > 0 {
		nc, err := nats.Connect(cfg.NATS, nats.Name("pushgrid-bench"), nats.Timeout(5*time.Second))
		if err != nil {
			return res, fmt.Errorf("recover: no NATS server answers at %s: %w", cfg.NATS, err)
		}
		defer nc.Close()
		err = r.recover(ctx, nc, res)
		if res.Recovery != nil {
			res.Recovery.Duplicates = r.dups.Load()
		}
		return res, err
	}
	if len(cfg.Rates) == 0 {
		// Idle connections are measured at the end of the hold, once the
		// server has settled after the connection storm.
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Hold):
		}
		idleRSS()
		return res, nil
	}
	idleRSS()
	nc, err := nats.Connect(cfg.NATS, nats.Name("pushgrid-bench"), nats.Timeout(5*time.Second))
	if err != nil {
		return res, fmt.Errorf("publisher: no NATS server answers at %s: %w", cfg.NATS, err)
	}
	defer nc.Close()
	var seq int64
	for _, rate := range cfg.Rates {
		st, err := r.step(ctx, nc, rate, &seq)
		res.Steps = append(res.Steps, st)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// connect opens and joins every subscriber, Dialers at a time.
func (r *run) connect(ctx context.Context, res *Result) error {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	serverCPU := -1.0
	if cfg.PID > 0 {
		if cpu, err := processCPU(cfg.PID); err == nil {
			serverCPU = cpu
		}
	}
	clientCPU, _ := processCPU(os.Getpid())
	r.subs = make([]*subscriber, cfg.Subs)
	var mu sync.Mutex
	var firstErr error
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Dialers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s, err := r.dial(ctx, i)
				mu.Lock()
				if err != nil {
					res.ConnectErrors++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					r.subs[i] = s
					res.Connected++
				}
				mu.Unlock()
			}
		}()
	}
	stop := r.progress("connect", func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d/%d joined, %d errors", res.Connected, cfg.Subs, res.ConnectErrors)
	})
	for i := 0; i < cfg.Subs && ctx.Err() == nil; i++ {
		if cfg.ConnectRate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(float64(i) / cfg.ConnectRate * float64(time.Second)))))
		}
		work <- i
	}
	close(work)
	wg.Wait()
	stop()
	res.ConnectSeconds = time.Since(start).Seconds()
	if cpu, err := processCPU(os.Getpid()); err == nil {
		res.ConnectClientCPU = cpu - clientCPU
	}
	if serverCPU >= 0 {
		if cpu, err := processCPU(cfg.PID); err == nil {
			res.ConnectServerCPU = cpu - serverCPU
		}
	}
	res.ConnectControlFrames = r.settleControls(ctx)
	for _, s := range r.subs {
		if s != nil {
			r.want[s.channel]++
		}
	}
	if res.Connected == 0 {
		return fmt.Errorf("no subscriber could connect: %v", firstErr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("connect phase: %d of %d joined within %v", res.Connected, cfg.Subs, cfg.Timeout)
	}
	return nil
}

// Bounds of settleControls: the control frames count once none came for
// controlQuiet, or at controlSettle.
const (
	controlQuiet  = 200 * time.Millisecond
	controlSettle = 2 * time.Second
)

// settleControls returns the control frames read once they stop coming.
// A node may send a join's announcements after its joined answer, so the
// last joins' are still on their way when the connect phase ends; waiting
// for them is not timed.
func (r *run) settleControls(ctx context.Context) int64 {
	n := r.controls.Load()
	if n == 0 {
		return 0 // a server that announces nothing
	}
	changed := time.Now()
	for end := changed.Add(controlSettle); time.Now().Before(end) && time.Since(changed) < controlQuiet; {
		select {
		case <-ctx.Done():
			return n
		case <-time.After(20 * time.Millisecond):
		}
		if m := r.controls.Load(); m != n {
			n, changed = m, time.Now()
		}
	}
	return n
}

func (r *run) dial(ctx context.Context, i int) (*subscriber, error) {
	return r.dialSince(ctx, i, -1, nil)
}

// dialSince opens subscriber i and joins its channel, with since when it
// is not negative; rec, when not nil, counts what it then receives.
func (r *run) dialSince(ctx context.Context, i int, since int64, rec *recovering) (*subscriber, error) {
	cfg := r.cfg
	s := &subscriber{r: r, channel: i % cfg.Channels, joined: make(chan struct{}), rec: rec}
	if cfg.Proto == ProtoSocketIO {
		return r.dialSocketIO(ctx, i, s)
	}
	addr := cfg.URLs[i%len(cfg.URLs)]
	header := r.credentials(i, s)
	// With credentials the node takes the user from them alone
	// (PROTOCOL.md §1), so the query does not name it.
	if s.user == "" && cfg.UserPrefix != "" {
		sep := "?"
		if strings.Contains(addr, "?") {
			sep = "&"
		}
		addr += sep + "user=" + url.QueryEscape(cfg.userName(i))
	}
	conn, _, err := gws.NewClient(s, r.clientOption(i, addr, header))
	if err != nil {
		return nil, err
	}
	s.conn = conn
	go conn.ReadLoop()
	join := `{"type":"join","channel":"` + channelName(s.channel) + `"}`
	if since >= 0 {
		join = `{"type":"join","channel":"` + channelName(s.channel) + `","since":` + strconv.FormatInt(since, 10) + `}`
	}
	if err := conn.WriteString(join); err != nil {
		_ = conn.NetConn().Close()
		return nil, err
	}
	if err := s.await(ctx, s.joined, nil, "joined answer"); err != nil {
		return nil, err
	}
	if err := s.checkWelcome(); err != nil {
		return nil, err
	}
	return s, nil
}

// credentials is the header subscriber i sends with a token
// (Config.AuthSecret) or for the hook (Config.Hook), which then names s's
// user.
func (r *run) credentials(i int, s *subscriber) http.Header {
	header := http.Header{}
	switch {
	case r.tokens != nil:
		s.user = r.cfg.userName(i)
		header.Set("Authorization", "Bearer "+r.tokens[i])
	case r.cfg.Hook:
		s.user = r.cfg.userName(i)
		header.Set("Cookie", hookCookie+"="+s.user)
	}
	return header
}

// clientOption is how subscriber i opens its WebSocket.
func (r *run) clientOption(i int, addr string, header http.Header) *gws.ClientOption {
	return &gws.ClientOption{
		Addr:               addr,
		RequestHeader:      header,
		ReadBufferSize:     2048,
		ReadMaxPayloadSize: 1 << 20,
		HandshakeTimeout:   10 * time.Second,
		NewDialer: func() (gws.Dialer, error) {
			d := &net.Dialer{Timeout: 10 * time.Second}
			if len(r.cfg.SrcIPs) > 0 {
				d.LocalAddr = &net.TCPAddr{IP: r.cfg.SrcIPs[i%len(r.cfg.SrcIPs)]}
			}
			return d, nil
		},
	}
}

// joinWait bounds each wait of a subscriber's connect and join.
const joinWait = 10 * time.Second

// await waits for ready to close, closing s's socket if it does not
// within joinWait, if ctx ends first, or if failed closes first (then
// with s.failure as the error).
func (s *subscriber) await(ctx context.Context, ready, failed <-chan struct{}, what string) error {
	t := time.NewTimer(joinWait)
	defer t.Stop()
	var err error
	select {
	case <-ready:
		return nil
	case <-failed:
		err = s.failure
	case <-ctx.Done():
		err = fmt.Errorf("no %s", what)
	case <-t.C:
		err = fmt.Errorf("no %s within %v", what, joinWait)
	}
	_ = s.conn.NetConn().Close()
	return err
}

// checkWelcome fails a subscriber that sent credentials and was not
// welcomed as their user.
func (s *subscriber) checkWelcome() error {
	if s.user != "" && !s.welcomed {
		// The node did not take the user from the credentials: it is
		// not in the auth mode this run measures.
		_ = s.conn.NetConn().Close()
		return fmt.Errorf("the welcome did not name user %s, whose credentials were sent", s.user)
	}
	return nil
}

func (r *run) closeAll() {
	for _, s := range r.subs {
		if s != nil {
			_ = s.conn.NetConn().Close()
		}
	}
}

// step publishes at rate (0: closed loop) for warmup then duration and
// measures the second part.
func (r *run) step(ctx context.Context, nc *nats.Conn, rate float64, seq *int64) (Step, error) {
	cfg := r.cfg
	st := Step{Rate: rate}
	subj := broker.Subjects{Prefix: cfg.Prefix}
	subjects := make([]string, cfg.Channels)
	for i := range subjects {
		subjects[i] = subj.Channel(channelName(i))
	}
	var published, expected, sent int64
	publish := func() error {
		s := *seq
		*seq++
		sent++
		ch := int(s) % cfg.Channels
		r.ring[s%ringSize].Store(0)
		if err := nc.Publish(subjects[ch], makePayload(s, cfg.Size)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if r.measuring.Load() {
			published++
			expected += int64(r.want[ch])
		}
		return nil
	}

	phaseEnd := time.Now().Add(cfg.Warmup)
	measureStart := phaseEnd
	end := phaseEnd.Add(cfg.Duration)
	var cpuStart float64
	var w *window
	startMeasure := func() {
		r.disconnects.Store(0)
		r.errs.Store(0)
		if cfg.PID > 0 {
			cpuStart, _ = processCPU(cfg.PID)
		}
		measureStart = time.Now()
		w = r.openWindow(*seq)
		r.measuring.Store(true)
	}
	if cfg.Warmup <= 0 {
		startMeasure()
	}
	stop := r.progress(stepName(rate), func() string {
		secs := time.Since(measureStart).Seconds()
		if !r.measuring.Load() || secs <= 0 {
			return "warming up"
		}
		return fmt.Sprintf("%.0f deliveries/s, %d disconnects", float64(r.window.Load().delivered.Load())/secs, r.disconnects.Load())
	})
	defer stop()

	// A rate step publishes rate*(now-paced) messages by now, counted from
	// the step's start, then again from the measurement's: a stall in the
	// warm-up is not made up inside the measurement, and one near its end
	// is made up before it ends, so that it measures rate*Duration
	// messages whatever the scheduler does.
	paced := time.Now()
	inflight := 0
	for {
		now := time.Now()
		if !r.measuring.Load() && now.After(phaseEnd) {
			startMeasure()
			end = time.Now().Add(cfg.Duration)
			paced, sent = measureStart, 0
		}
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		over := r.measuring.Load() && now.After(end)
		if rate != 0 {
			upTo := now
			if upTo.After(end) {
				upTo = end
			}
			due := int64(rate * upTo.Sub(paced).Seconds())
			for sent < due {
				if err := publish(); err != nil {
					return st, err
				}
			}
		}
		if over {
			break
		}
		if rate == 0 {
			// Closed loop: keep Window messages in flight; a message is
			// done when all its subscribers have it.
			for inflight < cfg.Window {
				if err := publish(); err != nil {
					return st, err
				}
				inflight++
			}
			select {
			case <-r.done:
				inflight = r.inFlight(*seq, inflight)
			case <-time.After(time.Second):
				inflight = 0 // stalled: count the rest as lost and go on
			}
			continue
		}
		time.Sleep(time.Millisecond)
	}
	r.measuring.Store(false)
	w.to.Store(*seq)
	elapsed := time.Since(measureStart).Seconds()
	// Let what is in flight land, bounded.
	_ = nc.FlushTimeout(5 * time.Second)
	settle := time.Now().Add(2 * time.Second)
	for time.Now().Before(settle) && w.delivered.Load() < expected {
		time.Sleep(10 * time.Millisecond)
	}
	st.Seconds = elapsed
	st.Published = published
	st.Expected = expected
	st.Delivered = w.delivered.Load()
	st.Lost = max(expected-st.Delivered, 0)
	st.DeliveriesPerSec = float64(st.Delivered) / elapsed
	ps, maxMS := w.lat.percentiles(0.5, 0.9, 0.99)
	st.P50, st.P90, st.P99, st.Max = ps[0], ps[1], ps[2], maxMS
	st.Disconnects = r.disconnects.Load()
	st.Errors = r.errs.Load()
	if cfg.PID > 0 {
		if cpu, err := processCPU(cfg.PID); err == nil {
			st.ServerCPUSeconds = cpu - cpuStart
			if st.ServerCPUSeconds > 0 {
				st.PerCPUSecond = float64(st.Delivered) / st.ServerCPUSeconds
			}
		}
	}
	return st, nil
}

// channelName is the name of channel i of a run.
func channelName(i int) string { return "bench" + strconv.Itoa(i) }

// inFlight recounts the messages of the window not yet at all their
// subscribers.
func (r *run) inFlight(next int64, window int) int {
	n := 0
	for s := next - int64(window); s < next; s++ {
		if s >= 0 && r.ring[s%ringSize].Load() < r.want[int(s)%len(r.want)] {
			n++
		}
	}
	return n
}

func stepName(rate float64) string {
	if rate == 0 {
		return "closed loop"
	}
	return fmt.Sprintf("%g msg/s", rate)
}

// progress prints a live line every half second until stop is called.
func (r *run) progress(phase string, line func() string) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprintf(r.cfg.Progress, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(r.cfg.Progress, "\r\033[K%s: %s", phase, line())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

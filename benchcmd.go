package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/pushgrid/pushgrid/bench"
)

// BenchCmd runs the load generator against any pushgrid cluster.
type BenchCmd struct {
	URL         []string      `name:"url" default:"ws://127.0.0.1:8000/ws" help:"Gateway WebSocket URL (repeatable; connections are spread over them)."`
	Proto       string        `default:"${bench_proto}" enum:"${bench_protos}" help:"What subscribers speak: native (/ws), or socketio (Socket.IO over WebSocket on /socket.io/ of each --url's host, joining with emit(\"join\", channel, ack))."`
	NATS        string        `default:"nats://127.0.0.1:4222" help:"NATS URL the publisher uses."`
	Prefix      string        `default:"${bench_prefix}" help:"Subject prefix of the cluster."`
	Subs        int           `default:"${bench_subs}" help:"Subscriber connections."`
	Channels    int           `default:"${bench_channels}" help:"Channels; subscribers are spread over them."`
	Rate        string        `default:"0" help:"Messages per second of each step, a comma list; 0 = as fast as subscribers keep up, with --window messages in flight; empty = connect, join, hold."`
	Duration    time.Duration `default:"${bench_duration}" help:"Measured time of each step."`
	Warmup      time.Duration `default:"1s" help:"Unmeasured time before each step."`
	Hold        time.Duration `default:"5s" help:"With an empty --rate: how long the joined connections stay."`
	Size        int           `default:"${bench_size}" help:"Payload bytes."`
	Window      int           `default:"${bench_window}" help:"Closed loop: messages in flight."`
	SrcIPs      string        `name:"src-ips" help:"Local addresses to connect from, a comma list of addresses or ranges (127.0.0.2-127.0.0.9), so one machine can open more than ~28k connections."`
	UserPrefix  string        `name:"user-prefix" default:"bench" help:"Subscriber i connects as user <prefix><i>; empty: anonymous (a node rate-limits anonymous connections per client IP)."`
	AuthSecret  string        `name:"auth-secret" help:"For a node in auth.mode jwt: its HS256 secret; each subscriber sends a token of its own (sub: its user, signed before the connect phase) as Authorization: Bearer."`
	Hook        bool          `name:"hook" help:"For a node in auth.mode hook: answer its auth requests on --nats with the user each subscriber names in its uid cookie, and count them."`
	Dialers     int           `default:"${bench_dialers}" help:"Connections being opened at once."`
	Recover     int           `help:"With a history channel and an empty --rate: the subscribers leave, this many messages are published to each channel through the server API, and they come back with since; report how long until each has them all."`
	ConnectRate float64       `name:"connect-rate" help:"Connects per second of the connect phase; 0: as fast as the dialers go. Pace two servers alike to compare their CPU per connect: a node's work per connect depends on how many arrive together."`
	Timeout     time.Duration `default:"${bench_timeout}" help:"Bound of the connect phase."`
	PID         int           `name:"server-pid" help:"PID of the server on this machine: report its CPU time and memory."`
	Procs       int           `default:"1" help:"OS threads for the load generator (GOMAXPROCS); keep it low on the server's machine."`
	JSON        bool          `name:"json" help:"Print the result as JSON."`
}

// benchVars feeds bench's default constants into the flags' defaults, so
// each default is written once.
func benchVars() kong.Vars {
	return kong.Vars{
		"bench_proto":    bench.DefaultProto,
		"bench_protos":   bench.ProtoNative + "," + bench.ProtoSocketIO,
		"bench_prefix":   bench.DefaultPrefix,
		"bench_subs":     strconv.Itoa(bench.DefaultSubs),
		"bench_channels": strconv.Itoa(bench.DefaultChannels),
		"bench_duration": bench.DefaultDuration.String(),
		"bench_size":     strconv.Itoa(bench.DefaultSize),
		"bench_window":   strconv.Itoa(bench.DefaultWindow),
		"bench_dialers":  strconv.Itoa(bench.DefaultDialers),
		"bench_timeout":  bench.DefaultTimeout.String(),
	}
}

// benchFlags names the flag of each bench.Config field that bench.Run may
// refuse.
var benchFlags = map[string]string{
	"URLs": "--url", "Proto": "--proto", "NATS": "--nats", "Subs": "--subs", "Channels": "--channels",
	"Rates": "--rate", "Size": "--size", "Window": "--window", "Dialers": "--dialers", "ConnectRate": "--connect-rate", "Recover": "--recover",
	"UserPrefix": "--user-prefix", "AuthSecret": "--auth-secret", "Hook": "--hook",
}

// flagError says a bench.ConfigError in terms of the flag that set the
// value.
func flagError(err error) error {
	var ce *bench.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	flag, ok := benchFlags[ce.Field]
	if !ok {
		return err
	}
	if ce.Value == "" {
		return fmt.Errorf("%s: %s", flag, ce.Reason)
	}
	return fmt.Errorf("%s %s: %s", flag, ce.Value, ce.Reason)
}

func (b *BenchCmd) Run(e *env) error {
	runtime.GOMAXPROCS(b.Procs)
	rates, err := parseRates(b.Rate)
	if err != nil {
		return err
	}
	ips, err := parseIPs(b.SrcIPs)
	if err != nil {
		return err
	}
	cfg := bench.Config{
		URLs: b.URL, Proto: b.Proto, NATS: b.NATS, Prefix: b.Prefix, Subs: b.Subs, Channels: b.Channels, Rates: rates,
		Duration: b.Duration, Warmup: b.Warmup, Hold: b.Hold, Size: b.Size, Window: b.Window, SrcIPs: ips, UserPrefix: b.UserPrefix,
		AuthSecret: b.AuthSecret, Hook: b.Hook, Dialers: b.Dialers, ConnectRate: b.ConnectRate, Recover: b.Recover, Timeout: b.Timeout, PID: b.PID,
	}
	if f, ok := e.stderr.(*os.File); ok && isTerminal(f) {
		cfg.Progress = f
	}
	res, runErr := bench.Run(e.ctx, cfg)
	runErr = flagError(runErr)
	if res != nil {
		if b.JSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return err
			}
		} else {
			printResult(e, res)
		}
	}
	return runErr
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printResult(e *env, r *bench.Result) {
	fmt.Fprintf(e.stdout, "subscribers %d (%d joined, %d errors) in %d channels; connect+join %.2fs\n",
		r.Subs, r.Connected, r.ConnectErrors, r.Channels, r.ConnectSeconds)
	if r.Connected > 0 {
		server := "-"
		if r.ConnectServerCPU > 0 {
			server = fmt.Sprintf("%.0f µs", r.ConnectServerCPU/float64(r.Connected)*1e6)
		}
		fmt.Fprintf(e.stdout, "CPU per connect+join: server %s, load generator %.0f µs; %.0f connects/s\n",
			server, r.ConnectClientCPU/float64(r.Connected)*1e6, float64(r.Connected)/r.ConnectSeconds)
		fmt.Fprintf(e.stdout, "control frames read while joining: %d\n", r.ConnectControlFrames)
	}
	if r.HookRequests > 0 {
		fmt.Fprintf(e.stdout, "auth requests answered: %d\n", r.HookRequests)
	}
	if r.ServerRSSJoined > 0 {
		fmt.Fprintf(e.stdout, "server RSS %.1f MiB -> %.1f MiB: %.0f bytes per connection\n",
			float64(r.ServerRSSBefore)/(1<<20), float64(r.ServerRSSJoined)/(1<<20), r.RSSPerConn)
	}
	if len(r.Steps) == 0 {
		return
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "rate\tdeliveries/s\tper server CPU-s\tloss\tp50 ms\tp90 ms\tp99 ms\tmax ms\tdisconnects\terrors\t")
	for _, s := range r.Steps {
		rate := "closed"
		if s.Rate > 0 {
			rate = strconv.FormatFloat(s.Rate, 'g', -1, 64)
		}
		per := "-"
		if s.PerCPUSecond > 0 {
			per = fmt.Sprintf("%.0f", s.PerCPUSecond)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t\n",
			rate, s.DeliveriesPerSec, per, s.Lost, s.P50, s.P90, s.P99, s.Max, s.Disconnects, s.Errors)
	}
	w.Flush()
}

// parseRates parses "0,200,1000"; "" means no step (connect and hold).
func parseRates(s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r < 0 {
			return nil, fmt.Errorf("--rate: %q is not a rate (messages per second, 0 for closed loop)", f)
		}
		out = append(out, r)
	}
	return out, nil
}

// parseIPs parses "127.0.0.2,127.0.0.5-127.0.0.9" (IPv4 ranges).
func parseIPs(s string) ([]net.IP, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(lo).To4()
		if !isRange {
			ip := net.ParseIP(part)
			if ip == nil {
				return nil, fmt.Errorf("--src-ips: %q is not an IP address", part)
			}
			out = append(out, ip)
			continue
		}
		b := net.ParseIP(hi).To4()
		if a == nil || b == nil {
			return nil, fmt.Errorf("--src-ips: %q is not an IPv4 range like 127.0.0.2-127.0.0.9", part)
		}
		from, to := ipv4Int(a), ipv4Int(b)
		if to < from || to-from > 1<<16 {
			return nil, fmt.Errorf("--src-ips: range %q is empty or too large", part)
		}
		for n := from; n <= to; n++ {
			out = append(out, net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)))
		}
	}
	return out, nil
}

func ipv4Int(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

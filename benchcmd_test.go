package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushgrid/pushgrid/bench"
)

func TestParseRatesAndIPs(t *testing.T) {
	rates, err := parseRates("0, 200,1000")
	if err != nil || len(rates) != 3 || rates[1] != 200 {
		t.Fatalf("%v %v", rates, err)
	}
	if r, err := parseRates(""); err != nil || r != nil {
		t.Fatal("empty rate list")
	}
	for _, bad := range []string{"fast", "-1", "1,,2"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("rate %q accepted", bad)
		}
	}
	ips, err := parseIPs("127.0.0.2-127.0.0.4, ::1")
	if err != nil || len(ips) != 4 || ips[2].String() != "127.0.0.4" || ips[3].String() != "::1" {
		t.Fatalf("%v %v", ips, err)
	}
	for _, bad := range []string{"127.0.0.9-127.0.0.2", "nope", "1.2.3.4-x"} {
		if _, err := parseIPs(bad); err == nil {
			t.Errorf("src-ips %q accepted", bad)
		}
	}
}

// TestBenchCommand runs `pushgrid bench` against a node: every message of
// the closed loop and of a rate step reaches every subscriber.
func TestBenchCommand(t *testing.T) {
	n := startTestNode(t, "b1", nil)
	var out, errOut bytes.Buffer
	args := []string{"bench", "--url", n.ws, "--nats", n.nats, "--subs", "20", "--channels", "2",
		"--rate", "0,50", "--duration", "1s", "--warmup", "200ms", "--src-ips", "127.0.0.2-127.0.0.3", "--json"}
	if err := run(context.Background(), args, nil, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res bench.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Connected != 20 || len(res.Steps) != 2 {
		t.Fatalf("%+v", res)
	}
	for _, st := range res.Steps {
		if st.Delivered == 0 || st.Lost != 0 || st.Delivered != st.Expected || st.Disconnects != 0 || st.P50 <= 0 {
			t.Fatalf("step %+v", st)
		}
	}
	// Paced from the measurement's start, whatever the scheduler does.
	if rate := res.Steps[1]; rate.Published != 50 {
		t.Fatalf("50 msg/s for 1s published %d", rate.Published)
	}
	out.Reset()
	if err := run(context.Background(), []string{"bench", "--url", n.ws, "--subs", "3", "--rate", "", "--hold", "0s"}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "subscribers 3 (3 joined, 0 errors)") {
		t.Fatalf("%s", out.String())
	}
}

// TestBenchFlagErrors: a value bench refuses is reported with the flag
// that set it, before any connection.
func TestBenchFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--subs=-1"}, "--subs -1: "},
		{[]string{"--subs", "3", "--channels", "4"}, "--channels 4: need 1 to 3"},
		{[]string{"--size", "10"}, "--size 10: "},
		{[]string{"--window=-2"}, "--window -2: "},
		{[]string{"--dialers=-1"}, "--dialers -1: "},
		{[]string{"--nats", ""}, "--nats: "},
	}
	for _, k := range cases {
		var out, errOut bytes.Buffer
		args := append([]string{"bench", "--url", "ws://127.0.0.1:1/ws"}, k.args...)
		err := run(context.Background(), args, nil, &out, &errOut)
		if err == nil || !strings.HasPrefix(err.Error(), k.want) {
			t.Errorf("%v: error %v, want one starting %q", k.args, err, k.want)
		}
	}
}

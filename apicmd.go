package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// APICmd calls the server API (PROTOCOL.md §7) over NATS.
type APICmd struct {
	NATS    natsClient    `embed:""`
	Prefix  string        `default:"${default_prefix}" env:"PUSHGRID_PREFIX" help:"Subject prefix of the cluster."`
	Timeout time.Duration `default:"15s" help:"How long to wait for the answer (a durable publish waits out a failover)."`
	Method  string        `arg:"" help:"publish, presence, channels, history, subscribe, unsubscribe, disconnect or info."`
	Request string        `arg:"" optional:"" help:"The request, a JSON object (default {}); - reads standard input."`
}

// apiMethods are the methods of the server API.
var apiMethods = []string{"publish", "presence", "channels", "history", "subscribe", "unsubscribe", "disconnect", "info"}

func (a *APICmd) Run(e *env) error {
	known := false
	for _, m := range apiMethods {
		known = known || m == a.Method
	}
	if !known {
		return fmt.Errorf("unknown method %q; the server API has %s", a.Method, strings.Join(apiMethods, ", "))
	}
	req := []byte(a.Request)
	switch a.Request {
	case "":
		req = []byte("{}")
	case "-":
		var err error
		if req, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20+1)); err != nil {
			return err
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(req, &obj); err != nil {
		return fmt.Errorf("the request must be a JSON object: %w", err)
	}
	nc, err := a.NATS.connect(e, "pushgrid-api")
	if err != nil {
		return err
	}
	defer nc.Close()
	m, err := nc.Request(a.Prefix+".api."+a.Method, req, a.Timeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return errors.New("no node answers the server API (is the cluster older than the server API?)")
	case err != nil:
		return fmt.Errorf("%s: %w", a.Method, err)
	}
	var answer struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(m.Data, &answer)
	fmt.Fprintln(e.stdout, strings.TrimSpace(string(m.Data)))
	if answer.Error != "" {
		return fmt.Errorf("%s: %s", a.Method, answer.Error)
	}
	return nil
}

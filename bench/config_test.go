package bench

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{URLs: []string{"ws://x/ws"}}
	c.setDefaults()
	if c.Proto != DefaultProto || c.Prefix != DefaultPrefix || c.Subs != DefaultSubs || c.Channels != DefaultChannels || c.Duration != DefaultDuration ||
		c.Size != DefaultSize || c.Window != DefaultWindow || c.Dialers != DefaultDialers || c.Timeout != DefaultTimeout {
		t.Fatalf("defaults not filled: %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
}

// TestConfigErrors: each refused value is reported with the Config field
// that holds it, in the library's terms (no CLI flag).
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"URLs", func(c *Config) { c.URLs = nil }},
		{"URLs", func(c *Config) { c.Proto, c.URLs = ProtoSocketIO, []string{"ws://x/ws", "http://x/ws"} }},
		{"Proto", func(c *Config) { c.Proto = "mqtt" }},
		{"NATS", func(c *Config) { c.NATS = "" }},
		{"Subs", func(c *Config) { c.Subs = -1 }},
		{"Channels", func(c *Config) { c.Subs, c.Channels = 10, 11 }},
		{"Channels", func(c *Config) { c.Channels = -1 }},
		{"Size", func(c *Config) { c.Size = minPayload - 1 }},
		{"Size", func(c *Config) { c.Size = maxPayload + 1 }},
		{"Window", func(c *Config) { c.Window = -1 }},
		{"Dialers", func(c *Config) { c.Dialers = -1 }},
		{"ConnectRate", func(c *Config) { c.ConnectRate = -1 }},
		{"ConnectRate", func(c *Config) { c.ConnectRate = math.NaN() }},
		{"ConnectRate", func(c *Config) { c.ConnectRate = 2e6 }},
		{"NATS", func(c *Config) { c.NATS, c.Rates, c.Hook, c.UserPrefix = "", nil, true, "u" }},
		{"Hook", func(c *Config) { c.Hook, c.AuthSecret, c.UserPrefix = true, "k", "u" }},
		{"UserPrefix", func(c *Config) { c.AuthSecret = "k" }},
		{"UserPrefix", func(c *Config) { c.Hook = true }},
		{"Rates", func(c *Config) { c.Rates = []float64{10, -1} }},
		{"Rates", func(c *Config) { c.Rates = []float64{math.NaN()} }},
		{"Rates", func(c *Config) { c.Rates = []float64{math.Inf(1)} }},
	}
	for _, k := range cases {
		c := Config{URLs: []string{"ws://x/ws"}, NATS: "nats://x:4222", Rates: []float64{0}}
		k.edit(&c)
		c.setDefaults()
		err := c.validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != k.field {
			t.Errorf("%+v: error %v, want one about %s", c, err, k.field)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "bench: "+k.field) || strings.Contains(msg, "--") {
			t.Errorf("error %q: want it to start with bench: %s and name no flag", msg, k.field)
		}
	}
}

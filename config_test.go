package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func writeFile(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pushgrid.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedence: flag > environment > file > default, for keys of each
// kind (string, int, duration, list) and every combination of sources.
func TestPrecedence(t *testing.T) {
	keys := []struct {
		name         string
		fileBody     string // sets the key to the file's value
		envVar, flag string
		def, file    string // wanted values from each source
		env, flagVal string
		got          func(Configs) string
	}{
		{"gateway.listen", "[gateway]\nlisten = \":8001\"\n", "PUSHGRID_LISTEN", "--listen",
			":8000", ":8001", ":8002", ":8003", func(c Configs) string { return c.Gateway.Listen }},
		{"session.max_channels", "[session]\nmax_channels = 11\n", "PUSHGRID_MAX_CHANNELS", "--max-channels",
			"128", "11", "12", "13", func(c Configs) string { return strconv.Itoa(c.Session.MaxChannels) }},
		{"gateway.drain", "[gateway]\ndrain = \"1s\"\n", "PUSHGRID_DRAIN", "--drain",
			"5s", "1s", "2s", "3s", func(c Configs) string { return c.Gateway.Drain.String() }},
		{"nats.seeds", "[nats]\nseeds = [\"nats://f:1\"]\n", "PUSHGRID_SEEDS", "--seed",
			"", "nats://f:1", "nats://e:1", "nats://g:1", func(c Configs) string { return strings.Join(c.NATS.Seeds, ",") }},
	}
	for _, k := range keys {
		for mask := 0; mask < 8; mask++ {
			file, env, flag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			want := k.def
			var given []string
			if file {
				want = k.file
				given = append(given, "file")
			}
			if env {
				want = k.env
				given = append(given, "env")
			}
			if flag {
				want = k.flagVal
				given = append(given, "flag")
			}
			t.Run(k.name+"/"+strings.Join(append(given, "default")[:max(len(given), 1)], "+"), func(t *testing.T) {
				args := []string{"serve", "--node", "t1"}
				if file {
					args = append(args, "--config", writeFile(t, k.fileBody))
				}
				if env {
					t.Setenv(k.envVar, k.env)
				}
				if flag {
					args = append(args, k.flag, k.flagVal)
				}
				cfgs, err := loadSettings(args)
				if err != nil {
					t.Fatal(err)
				}
				if got := k.got(cfgs); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			})
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown keys", "[gateway]\nlisten = \":1\"\nlistn = \":2\"\n[nope]\nx = 1\n", []string{"gateway.listn: unknown key", "nope.x: unknown key"}},
		{"wrong types", "[session]\nmax_channels = \"many\"\n[gateway]\ndrain = 5\n", []string{"session.max_channels: want an integer", "gateway.drain: want a duration"}},
		{"bad duration", "[gateway]\ndrain = \"soon\"\n", []string{"gateway.drain: want a duration"}},
		{"bad array", "[nats]\nseeds = \"nats://a:1\"\n", []string{"nats.seeds: want an array of strings"}},
		{"bad value", "[session]\nmax_channels = -1\n", []string{"session.max_channels: -1 is not between 1 and 100000"}},
		{"bad node", "node = \"a.b\"\n", []string{`node: "a.b" is not a valid node name`}},
		{"not toml", "[gateway\n", []string{"parse TOML"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, c.body)
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"config", "check", path}, nil, &out, &errOut)
			if err == nil {
				t.Fatalf("config check accepted it:\n%s", out.String())
			}
			for _, w := range c.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			// serve refuses the same file before starting anything.
			if _, err := loadSettings([]string{"serve", "--config", path}); err == nil {
				t.Error("serve accepted it")
			}
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "config.example.toml"}, nil, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{`listen = ":8000"`, `drain = "5s"`, `max_channels = 128`, `cluster_name = "pushgrid"`, `private_prefix = "@"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective config lacks %s:\n%s", want, out.String())
		}
	}
	// The example's values are the defaults.
	fromFile, err := loadSettings([]string{"serve", "--node", "x", "--config", "config.example.toml"})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := loadSettings([]string{"serve", "--node", "x"})
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := encodeTOML(&a, fromFile); err != nil {
		t.Fatal(err)
	}
	encodeTOML(&b, defaults)
	if a.String() != b.String() {
		t.Fatalf("example differs from defaults:\n%s\n---\n%s", a.String(), b.String())
	}
	if defaults.Gateway.Drain != 5*time.Second {
		t.Fatal("default drain")
	}
}

func TestHelpListsCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "pub", "sub", "version", "config"} {
		if !strings.Contains(out.String(), "  "+cmd) {
			t.Errorf("help lacks %s:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"serve", "--help"}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--config", "--node", "--listen", "--nats-listen", "--cluster-listen", "--seed", "--cluster-name",
		"--admin-listen", "--workers", "--nats-url", "--log-level", "--log-format", "--drain", "PUSHGRID_LISTEN"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("serve help lacks %s", flag)
		}
	}
}

// TestExampleConfigHasEveryKey: config.example.toml documents every key.
func TestExampleConfigHasEveryKey(t *testing.T) {
	example, err := os.ReadFile("config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := toml.Unmarshal(example, &tree); err != nil {
		t.Fatal(err)
	}
	flat := map[string]any{}
	flatten("", tree, flat)
	for key := range settingKeys {
		if _, ok := flat[key]; !ok && key != "node" { // node defaults to the host name: shown commented out
			t.Errorf("config.example.toml lacks %s", key)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pushgrid/pushgrid/internal/schema"
	"github.com/pushgrid/pushgrid/internal/testcert"
	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
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
		got          func(node.Config) string
	}{
		{"gateway.listen", "[gateway]\nlisten = \":8001\"\n", "PUSHGRID_LISTEN", "--listen",
			":8000", ":8001", ":8002", ":8003", func(c node.Config) string { return c.Gateway.Listen }},
		{"session.max_channels", "[session]\nmax_channels = 11\n", "PUSHGRID_MAX_CHANNELS", "--max-channels",
			"128", "11", "12", "13", func(c node.Config) string { return strconv.Itoa(c.Session.MaxChannels) }},
		{"gateway.drain", "[gateway]\ndrain = \"1s\"\n", "PUSHGRID_DRAIN", "--drain",
			"5s", "1s", "2s", "3s", func(c node.Config) string { return c.Gateway.Drain.String() }},
		{"nats.seeds", "[nats]\nseeds = [\"nats://f:1\"]\n", "PUSHGRID_SEEDS", "--seed",
			"", "nats://f:1", "nats://e:1", "nats://g:1", func(c node.Config) string { return strings.Join(c.NATS.Seeds, ",") }},
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
				// Routes on loopback: seeds alone would open them on :6222,
				// which needs nats.cluster_secret.
				args := []string{"serve", "--node", "t1", "--cluster-listen", "127.0.0.1:6222"}
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
	if err := encodeTOML(&a, fromFile.Effective()); err != nil {
		t.Fatal(err)
	}
	_ = encodeTOML(&b, defaults.Effective())
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
	if !strings.Contains(string(example), "# node = ") {
		t.Error("config.example.toml lacks node, even commented out")
	}
}

// TestREADMEConfigTable: the README's configuration reference is what
// `pushgrid config docs` prints from the keys' declarations.
func TestREADMEConfigTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), configTable()) {
		t.Fatalf("README.md's configuration table is not `pushgrid config docs`'s; run it and paste:\n%s", configTable())
	}
}

// TestEveryKeyFromEverySource: every key is read from its flag, its
// environment variable and the file, and has its default without them.
func TestEveryKeyFromEverySource(t *testing.T) {
	for _, k := range settingKeys {
		t.Run(k.Path, func(t *testing.T) {
			files := sampleFiles(t)
			value := sampleValue(k, files)
			read := func(cfg node.Config) string {
				f := reflect.ValueOf(cfg).FieldByIndex(k.Index)
				if f.Kind() == reflect.Slice {
					return strings.Join(f.Interface().([]string), ",")
				}
				return fmt.Sprint(f.Interface())
			}
			def, err := loadSettings([]string{"serve"})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := read(def), defaultText(k); got != want {
				t.Errorf("default %q, want %q", got, want)
			}
			table, key, _ := strings.Cut(k.Path, ".")
			body := fmt.Sprintf("[%s]\n%s = %s\n", table, key, value.toml)
			if key == "" {
				body = fmt.Sprintf("%s = %s\n", table, value.toml)
			}
			needs := sampleNeeds(k.Path, files)
			fromFile, err := loadSettings(append([]string{"serve", "--config", writeFile(t, body)}, needs...))
			if err != nil {
				t.Fatal(err)
			}
			fromFlag, err := loadSettings(append([]string{"serve", "--" + k.Flag + "=" + value.text}, needs...))
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv(k.Env, value.text)
			fromEnv, err := loadSettings(append([]string{"serve"}, needs...))
			if err != nil {
				t.Fatal(err)
			}
			for source, cfg := range map[string]node.Config{"file": fromFile, "flag": fromFlag, "environment": fromEnv} {
				if got := read(cfg); got != value.read {
					t.Errorf("from the %s: %q, want %q", source, got, value.read)
				}
			}
		})
	}
}

// sampleNeeds are the flags that make a key's sample valid when it cannot
// be set alone (a certificate needs its key, a jwt key needs mode jwt),
// given alike with each source of the key itself.
func sampleNeeds(key string, files testFiles) []string {
	jwt := []string{"--auth", "jwt"}
	switch key {
	case "nats.seeds": // routes then listen on :6222, beyond loopback
		return []string{"--cluster-secret", "a-route-secret-of-16+"}
	case "auth.secret":
		return jwt
	case "auth.issuer", "auth.audience":
		return append(jwt, "--auth-secret", testSecret)
	case "auth.public_key_file":
		return jwt
	}
	switch key {
	case "gateway.tls_cert":
		return []string{"--tls-key", files.tls.Key}
	case "gateway.tls_key":
		return []string{"--tls-cert", files.tls.Cert}
	case "nats.tls_cert":
		return []string{"--nats-tls-key", files.tls.Key}
	case "nats.tls_key":
		return []string{"--nats-tls-cert", files.tls.Cert}
	case "nats.tls_ca":
		return []string{"--nats-tls-cert", files.tls.Cert, "--nats-tls-key", files.tls.Key}
	}
	return nil
}

// testFiles are files the key samples name.
type testFiles struct {
	tls       testcert.Files
	publicKey string
}

// sampleFiles makes a certificate set and an Ed25519 public key in a
// directory of t's.
func sampleFiles(t *testing.T) testFiles {
	f := testFiles{tls: testcert.New(t)}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f.publicKey = filepath.Join(t.TempDir(), "ed25519.pem")
	if err := os.WriteFile(f.publicKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// sample is a valid value other than the default, as each source spells it.
type sample struct{ toml, text, read string }

// sampleValue is a valid value of k other than its default.
func sampleValue(k schema.Key, files testFiles) sample {
	path := func(p string) sample { return sample{strconv.Quote(p), p, p} }
	special := map[string]sample{
		"auth.public_key_file":      path(files.publicKey),
		"gateway.tls_cert":          path(files.tls.Cert),
		"gateway.tls_key":           path(files.tls.Key),
		"nats.tls_cert":             path(files.tls.Cert),
		"nats.tls_key":              path(files.tls.Key),
		"nats.tls_ca":               path(files.tls.CA),
		"node":                      {`"n7"`, "n7", "n7"},
		"pid_file":                  path(filepath.Join(os.TempDir(), "pushgrid-test.pid")),
		"history.dir":               {`"/var/lib/pushgrid-test"`, "/var/lib/pushgrid-test", "/var/lib/pushgrid-test"},
		"history.store":             {`"memory"`, "memory", "memory"},
		"gateway.listen":            {`":8123"`, ":8123", ":8123"},
		"gateway.sticky":            {`"none"`, "none", "none"},
		"gateway.trusted_proxies":   {`["10.0.0.0/8"]`, "10.0.0.0/8", "10.0.0.0/8"},
		"gateway.origins":           {`["https://a.example"]`, "https://a.example", "https://a.example"},
		"auth.mode":                 {`"hook"`, "hook", "hook"},
		"auth.secret":               {`"` + testSecret + `"`, testSecret, testSecret},
		"auth.issuer":               {`"https://issuer.example"`, "https://issuer.example", "https://issuer.example"},
		"auth.audience":             {`"pushgrid"`, "pushgrid", "pushgrid"},
		"auth.cookie":               {`"sid"`, "sid", "sid"},
		"nats.token":                {`"a-nats-token-of-16+"`, "a-nats-token-of-16+", "a-nats-token-of-16+"},
		"nats.cluster_secret":       {`"a-route-secret-of-16+"`, "a-route-secret-of-16+", "a-route-secret-of-16+"},
		"admin.token":               {`"an-admin-token-of-16+"`, "an-admin-token-of-16+", "an-admin-token-of-16+"},
		"nats.listen":               {`"127.0.0.1:4999"`, "127.0.0.1:4999", "127.0.0.1:4999"},
		"nats.cluster_listen":       {`"127.0.0.1:6999"`, "127.0.0.1:6999", "127.0.0.1:6999"},
		"nats.seeds":                {`["nats://10.0.0.2:6222"]`, "nats://10.0.0.2:6222", "nats://10.0.0.2:6222"},
		"nats.url":                  {`"nats://10.0.0.2:4222"`, "nats://10.0.0.2:4222", "nats://10.0.0.2:4222"},
		"nats.cluster_name":         {`"blue"`, "blue", "blue"},
		"nats.prefix":               {`"pg"`, "pg", "pg"},
		"session.private_prefix":    {`"="`, "=", "="},
		"session.max_message_bytes": {"1024", "1024", "1024"},
		"session.queue_bytes":       {"8388608", "8388608", "8388608"},
		"socketio.path":             {`"/sio/"`, "/sio/", "/sio/"},
		"socketio.max_payload":      {"2048", "2048", "2048"},
		"admin.listen":              {`"127.0.0.1:6999"`, "127.0.0.1:6999", "127.0.0.1:6999"},
		"log.level":                 {`"debug"`, "debug", "debug"},
		"log.format":                {`"json"`, "json", "json"},
	}
	if s, ok := special[k.Path]; ok {
		return s
	}
	switch {
	case k.Type == reflect.TypeFor[time.Duration]():
		return sample{`"3s"`, "3s", "3s"}
	case k.Type.Kind() == reflect.Int:
		return sample{"7", "7", "7"}
	case k.Type.Kind() == reflect.Float64:
		return sample{"7.5", "7.5", "7.5"}
	}
	panic("no sample value for " + k.Path + ": add one to sampleValue")
}

// defaultText is k's default as read reads it from a Config.
func defaultText(k schema.Key) string {
	if k.Type == reflect.TypeFor[time.Duration]() {
		d, _ := time.ParseDuration(k.Default)
		return d.String()
	}
	return k.Default
}

// TestEveryKeyRefusesABadValue: a bad value of every key is refused once,
// with the key's path; the cases are files in testdata/config/bad, one per
// key, each saying what it wants.
func TestEveryKeyRefusesABadValue(t *testing.T) {
	for key := range settingKeys {
		path := filepath.Join("testdata", "config", "bad", key+".toml")
		t.Run(key, func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("every key needs a bad case: %v", err)
			}
			_, want, ok := strings.Cut(string(body), "# want: ")
			want, _, _ = strings.Cut(want, "\n")
			if !ok || want == "" {
				t.Fatalf("%s has no # want: line", path)
			}
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{"config", "check", path}, nil, &out, &errOut); err == nil {
				t.Fatalf("accepted:\n%s", out.String())
			}
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], path+": "+want) {
				t.Fatalf("errors:\n%s\nwant one line with %q", errOut.String(), path+": "+want)
			}
		})
	}
	// No case for a key that does not exist.
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "bad", "*.toml"))
	for _, f := range files {
		if _, ok := settingKeys[strings.TrimSuffix(filepath.Base(f), ".toml")]; !ok {
			t.Errorf("%s: no such key", f)
		}
	}
}

// TestExampleChannelRules: the [[channels]] example in config.example.toml,
// uncommented, is a valid rule with the defaults it claims.
func TestExampleChannelRules(t *testing.T) {
	example, err := os.ReadFile("config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	in := false
	for _, line := range strings.Split(string(example), "\n") {
		switch {
		case line == "# [[channels]]":
			in = true
		case in && !strings.HasPrefix(line, "# "):
			in = false
		}
		if in {
			table = append(table, strings.TrimPrefix(line, "# "))
		}
	}
	if len(table) < 2 {
		t.Fatal("config.example.toml has no commented [[channels]] example")
	}
	cfg, err := loadSettings([]string{"serve", "--config", writeConfig(t, strings.Join(table, "\n"))})
	if err != nil {
		t.Fatal(err)
	}
	want := session.DefaultRule()
	want.Pattern = session.MustPattern("news.>")
	if len(cfg.Channels) != 1 || !reflect.DeepEqual(cfg.Channels[0], want) {
		t.Fatalf("rules %+v, want the defaults for news.>", cfg.Channels)
	}
}

// TestChannelRuleErrors: a bad [[channels]] table is refused naming
// channels[i].key, every error once, and nothing else.
func TestChannelRuleErrors(t *testing.T) {
	cases := map[string]string{
		"[[channels]]\njoin = \"any\"":     "channels[0].pattern: a pattern is required",
		"[[channels]]\npattern = \"a..b\"": "channels[0].pattern: pattern \"a..b\"",
		"[[channels]]\npattern = \"a\"\n[[channels]]\npattern = \"b\"\njoin = \"everyone\"":          "channels[1].join: \"everyone\" is not any, user, claim or none",
		"[[channels]]\npattern = \"a\"\nchat = 3":                                                    "channels[0].chat: want a string",
		"[[channels]]\npattern = \"a\"\nannounce = \"yes\"":                                          "channels[0].announce: want true or false",
		"[[channels]]\npattern = \"a\"\nannounce_limit = -1":                                         "channels[0].announce_limit: -1 is not between",
		"[[channels]]\npattern = \"a\"\nhistory = -5":                                                "channels[0].history: -5 is not between",
		"[[channels]]\npattern = \"a\"\nhistory_ttl = \"forever\"":                                   "channels[0].history_ttl: want a duration",
		"[[channels]]\npattern = \"a\"\ncolour = \"red\"":                                            "channels[0].colour: unknown key",
		"[[channels]]\npattern = \"a.>\"\nhistory = 5\n[[channels]]\npattern = \"*.b\"\nhistory = 5": "channels[1].pattern: \"*.b\" overlaps channels[0].pattern \"a.>\"",
		"channels = \"all\"": "channels: want [[channels]] tables",
	}
	for file, want := range cases {
		path := writeConfig(t, file)
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{"config", "check", path}, nil, &out, &errOut); err == nil {
			t.Errorf("%q accepted", file)
			continue
		}
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Errorf("%q: errors\n%s\nwant one line with %q", file, errOut.String(), want)
		}
	}
}

// TestConfigCheckHidesSecrets: a printed configuration names which
// credentials are set but never shows them.
func TestConfigCheckHidesSecrets(t *testing.T) {
	secrets := map[string]string{
		"auth.secret":         testSecret,
		"nats.token":          "a-nats-token-of-16+",
		"nats.cluster_secret": "a-route-secret-of-16+",
		"admin.token":         "an-admin-token-of-16+",
	}
	body := fmt.Sprintf("[auth]\nmode = \"jwt\"\nsecret = %q\n[nats]\ntoken = %q\ncluster_secret = %q\n[admin]\ntoken = %q\n",
		secrets["auth.secret"], secrets["nats.token"], secrets["nats.cluster_secret"], secrets["admin.token"])
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", writeFile(t, body)}, nil, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	for key, secret := range secrets {
		if strings.Contains(out.String(), secret) {
			t.Errorf("config check printed %s", key)
		}
		if !settingKeys[key].Secret {
			t.Errorf("%s is not marked secret", key)
		}
	}
	if n := strings.Count(out.String(), hiddenSecret); n != len(secrets) {
		t.Errorf("%d hidden values, want %d:\n%s", n, len(secrets), out.String())
	}
}

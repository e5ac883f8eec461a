package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/alecthomas/kong"

	"github.com/pushgrid/pushgrid/internal/schema"
	"github.com/pushgrid/pushgrid/node"
	"github.com/pushgrid/pushgrid/session"
)

// The configuration of serve is node.Config: every key is a field of its
// package's Config, whose tags declare the TOML key, the flag, the
// environment variable, the default and the help text (see the schema
// package). Precedence: flag > environment > file > default.

// settingKeys are the configuration keys by TOML path, and flagKeys the
// same by flag name, read from node.Config's tags.
var settingKeys, flagKeys = func() (map[string]schema.Key, map[string]schema.Key) {
	byPath, byFlag := map[string]schema.Key{}, map[string]schema.Key{}
	for _, k := range schema.Keys(reflect.TypeFor[node.Config]()) {
		byPath[k.Path], byFlag[k.Flag] = k, k
	}
	return byPath, byFlag
}()

// fileResolver gives kong the values of a TOML configuration file, keyed by
// each flag's toml tag. The [[channels]] tables are not flags: they are
// kept apart, for the command to take (see newParser).
type fileResolver struct {
	values   map[string]any
	channels []session.Rule
}

// loadTOML is kong's configuration loader: it reads the whole file, and
// refuses it, naming every offending key, if any key is unknown or of the
// wrong type.
func loadTOML(r io.Reader) (kong.Resolver, error) {
	var raw map[string]any
	if _, err := toml.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse TOML: %w", err)
	}
	var errs []error
	channels, err := decodeRules(raw["channels"])
	if err != nil {
		errs = append(errs, err)
	}
	delete(raw, "channels")
	values := make(map[string]any)
	flatten("", raw, values)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key, ok := settingKeys[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key", k))
			continue
		}
		v, err := convert(values[k], key.Type)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		values[k] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &fileResolver{values: values, channels: channels}, nil
}

// decodeRules reads the [[channels]] tables, each starting from
// session.DefaultRule, naming every bad key as channels[i].key (i from 0).
// The rules' own checks (values, overlaps) are session's.
func decodeRules(v any) ([]session.Rule, error) {
	if v == nil {
		return nil, nil
	}
	tables, ok := v.([]map[string]any)
	if !ok {
		return nil, fmt.Errorf("channels: want [[channels]] tables, got %v", v)
	}
	fields := map[string]int{}
	rt := reflect.TypeFor[session.Rule]()
	for i := 0; i < rt.NumField(); i++ {
		fields[rt.Field(i).Tag.Get("toml")] = i
	}
	var errs []error
	rules := make([]session.Rule, len(tables))
	for i, table := range tables {
		rules[i] = session.DefaultRule()
		rules[i].Pattern = session.Pattern{} // required: no default
		rv := reflect.ValueOf(&rules[i]).Elem()
		keys := make([]string, 0, len(table))
		for k := range table {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			path := fmt.Sprintf("channels[%d].%s", i, k)
			fi, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key", path))
				continue
			}
			if err := setRuleField(rv.Field(fi), table[k]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
	}
	return rules, errors.Join(errs...)
}

// setRuleField sets one field of a session.Rule from its TOML value.
func setRuleField(f reflect.Value, v any) error {
	switch f.Interface().(type) {
	case session.Pattern:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a pattern string such as \"news.>\", got %v", v)
		}
		p, err := session.ParsePattern(s)
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(p))
		return nil
	case bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want true or false, got %v", v)
		}
		f.SetBool(b)
		return nil
	}
	s, err := convert(v, f.Type())
	if err != nil {
		return err
	}
	return schema.Set(f, s.(string))
}

// flatten turns nested tables into dotted keys; arrays are values.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(key, sub, out)
			continue
		}
		out[key] = v
	}
}

// convert checks a TOML value against a setting's type and returns it in a
// form kong's mappers take.
func convert(v any, typ reflect.Type) (any, error) {
	if typ == reflect.TypeFor[time.Duration]() {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration string such as \"5s\", got %v", v)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("want a duration such as \"5s\": %v", err)
		}
		return s, nil
	}
	switch typ.Kind() {
	case reflect.String:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("want a string, got %v", v)
	case reflect.Int:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return nil, fmt.Errorf("want an integer, got %v", v)
	case reflect.Float64:
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		}
		return nil, fmt.Errorf("want a number, got %v", v)
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array of strings, got %v", v)
		}
		out := make([]any, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want an array of strings, element %d is %v", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported setting type %s", typ)
}

func (r *fileResolver) Validate(*kong.Application) error { return nil }

// Resolve yields the file's value for a flag, unless the flag's environment
// variable is set: kong asks resolvers after reading the environment, and
// our precedence puts the environment above the file.
func (r *fileResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	for _, name := range flag.Envs {
		if _, set := os.LookupEnv(name); set {
			return nil, nil
		}
	}
	key, ok := flagKeys[flag.Name]
	if !ok {
		return nil, nil
	}
	return r.values[key.Path], nil
}

// ConfigCmd groups configuration commands.
type ConfigCmd struct {
	Check ConfigCheckCmd `cmd:"" help:"Check a configuration file and print the effective configuration (file, then environment, applied over the defaults)."`
	Docs  ConfigDocsCmd  `cmd:"" help:"Print the configuration reference (every key, its flag, environment variable, default and meaning) as a Markdown table."`
}

// ConfigDocsCmd prints the configuration reference; the README's table is
// its output (a test checks).
type ConfigDocsCmd struct{}

func (ConfigDocsCmd) Run(e *env) error {
	_, err := io.WriteString(e.stdout, configTable())
	return err
}

// configTable is the configuration reference as a Markdown table, one row
// per key, from the keys' own declarations.
func configTable() string {
	var b strings.Builder
	b.WriteString("| key | flag | environment | default | meaning |\n|---|---|---|---|---|\n")
	for _, k := range schema.Keys(reflect.TypeFor[node.Config]()) {
		flag, env, def := "`--"+k.Flag+"`", "`"+k.Env+"`", "`"+k.Default+"`"
		switch {
		case k.Type.Kind() == reflect.Slice:
			flag += " (repeatable)"
			env += " (comma list)"
			def = "`[]`"
		case k.Default == "":
			def = "none"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Path, flag, env, def, strings.ReplaceAll(k.Help, "|", "\\|"))
	}
	return b.String()
}

// ConfigCheckCmd loads a file as serve would and prints the result.
type ConfigCheckCmd struct {
	File string `arg:"" type:"existingfile" help:"TOML configuration file."`
}

func (c *ConfigCheckCmd) Run(e *env) error {
	cfg, err := loadSettings([]string{"serve", "--config", c.File})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(e.stderr, "%s: %s\n", c.File, line)
		}
		return exitError{1}
	}
	fmt.Fprintf(e.stdout, "# effective configuration of %s (credentials not shown)\n", c.File)
	return encodeTOML(e.stdout, hideSecrets(cfg.Effective()))
}

// hiddenSecret stands for a credential's value in a printed configuration:
// a configuration check's output ends up in terminals, tickets and logs.
const hiddenSecret = "(set, not shown)"

// hideSecrets replaces the value of every credential that is set.
func hideSecrets(cfg node.Config) node.Config {
	v := reflect.ValueOf(&cfg).Elem()
	for _, k := range settingKeys {
		if f := v.FieldByIndex(k.Index); k.Secret && f.Kind() == reflect.String && f.String() != "" {
			f.SetString(hiddenSecret)
		}
	}
	return cfg
}

func encodeTOML(w io.Writer, cfg node.Config) error {
	return toml.NewEncoder(w).Encode(cfg)
}

// loadSettings parses a serve command line (with the environment and any
// --config file) into the configuration, and checks it.
func loadSettings(args []string) (node.Config, error) {
	var cli CLI
	parser, err := newParser(&cli, io.Discard, io.Discard)
	if err != nil {
		return node.Config{}, err
	}
	if _, err := parser.Parse(args); err != nil {
		return node.Config{}, err
	}
	cfg := cli.Serve.Config
	return cfg, cfg.Check()
}

// Package schema reads pushgrid's configuration schema from struct tags, so
// that every configuration key is declared once: a field of its package's
// Config with its TOML key (toml), flag (name), environment variable (env),
// default (default) and help text (help). The CLI (kong) reads the same
// tags to make flags; this package gives the rest: defaults for a Config
// built in Go, and the list of keys with their TOML paths, for the
// configuration file, the documentation and the tests.
//
// A field tagged toml:"-" or without a toml tag is not configuration. A
// nested struct with a toml tag is a table: its keys are "table.key".
package schema

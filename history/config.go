package history

import (
	"fmt"
	"os"

	"github.com/pushgrid/pushgrid/internal/schema"
)

// Store kinds of Config.Store.
const (
	StoreFile   = "file"
	StoreMemory = "memory"
)

// Config is the [history] table: where the history channels' messages are
// kept (PROTOCOL.md §6). Which channels keep history, how many messages
// and for how long, are the [[channels]] rules' history and history_ttl.
type Config struct {
	Dir   string `toml:"dir" name:"history-dir" env:"PUSHGRID_HISTORY_DIR" help:"Directory of the embedded NATS server's JetStream store: history channels' messages, and the cluster's stream metadata (default: ./pushgrid-data/<node>)."`
	Store string `toml:"store" name:"history-store" env:"PUSHGRID_HISTORY_STORE" default:"file" help:"Where history channels' messages live: file (on disk under history.dir, kept across restarts) or memory (lost when every replica of a channel restarts)."`
}

// DefaultDir is the store directory of node when history.dir is not set.
func DefaultDir(node string) string { return "./pushgrid-data/" + node }

func (c *Config) setDefaults() { schema.Defaults(c) }

// Check reports the first setting that cannot work, naming its key.
func (c *Config) Check() error {
	if c.Store != StoreFile && c.Store != StoreMemory {
		return fmt.Errorf("history.store: %q is neither %q nor %q", c.Store, StoreFile, StoreMemory)
	}
	if fi, err := os.Stat(c.Dir); c.Dir != "" && err == nil && !fi.IsDir() {
		return fmt.Errorf("history.dir: %q is a file, not a directory", c.Dir)
	}
	return nil
}

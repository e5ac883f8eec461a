package main

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kong"

	"github.com/pushgrid/pushgrid/node"
)

// ServeCmd runs a node.
type ServeCmd struct {
	File        kong.ConfigFlag `name:"config" env:"PUSHGRID_CONFIG" placeholder:"FILE" help:"TOML configuration file (see config.example.toml)."`
	node.Config `embed:""`
}

// defaultGCPercent is the GOGC a node runs with unless GOGC is set. Most
// of a node's memory is idle connections: live heap and goroutine stacks,
// and Go sizes the heap's headroom by both, so at Go's default (100) an
// idle node holds about as much garbage room as connections. The message
// path allocates per batch, not per member, so collecting sooner costs
// little CPU (measured: no slower connects or fanout, 7% less memory).
const defaultGCPercent = 50

func (s *ServeCmd) Run(e *env) error {
	if err := s.Config.Check(); err != nil {
		return err
	}
	cfg := s.Config.Effective()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	log := cfg.Logger(e.stderr)
	n, err := node.New(cfg, node.WithLogger(log), node.WithVersion(version))
	if err != nil {
		return err
	}
	log.Info("pushgrid", "version", version)
	if err := n.Start(e.ctx); err != nil {
		return err
	}
	<-e.ctx.Done()
	log.Info("shutting down", "drain", cfg.Gateway.Drain)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.Drain+2*cfg.Gateway.WriteTimeout+10*time.Second)
	defer cancel()
	return n.Shutdown(ctx)
}

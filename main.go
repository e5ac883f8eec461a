// Command pushgrid is a distributed push server: WebSocket clients join
// channels, chat, and receive what backends publish over NATS, on a cluster
// of nodes that each embed a NATS server. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/pushgrid/pushgrid/broker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// CLI is the whole command line; each command is a struct with Run.
type CLI struct {
	Serve   ServeCmd   `cmd:"" help:"Run a node: WebSocket gateway, embedded NATS server, cluster routes."`
	Pub     PubCmd     `cmd:"" help:"Publish a payload to a channel, a user, a connection or everyone."`
	API     APICmd     `cmd:"" name:"api" help:"Call the server API over NATS: pushgrid api METHOD '{json}'."`
	Sub     SubCmd     `cmd:"" help:"Print every message on a NATS subject until interrupted."`
	Bench   BenchCmd   `cmd:"" help:"Load-test a cluster: subscribers, publishes, deliveries/s, loss, latency."`
	Token   TokenCmd   `cmd:"" help:"Sign a token for auth.mode jwt (HS256, with auth.secret): for tests and scripts."`
	Version VersionCmd `cmd:"" help:"Print the version."`
	Config  ConfigCmd  `cmd:"" help:"Work with configuration files."`
}

// exitError carries a process exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal cancels ctx, a second one exits at once.
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "pushgrid: second signal, exiting now")
		os.Exit(1)
	}()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "pushgrid:", err)
		os.Exit(1)
	}
}

// env is what commands get from the process: streams and the context that
// ends on the first signal.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// run parses args and runs the command; tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	var cli CLI
	parser, err := newParser(&cli, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() {
		// kong calls Exit for --help and usage errors; turn it into an
		// error so tests are not ended by it.
		if r := recover(); r != nil {
			ee, ok := r.(exitError)
			if !ok {
				panic(r)
			}
			if ee.code != 0 {
				err = ee
			}
		}
	}()
	kctx, err := parser.Parse(args)
	if err != nil {
		parser.Errorf("%s", err)
		return exitError{2}
	}
	return kctx.Run(&env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr})
}

func newParser(cli *CLI, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("pushgrid"),
		kong.Description("A distributed push server: one binary per host, WebSocket clients, NATS inside."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitError{code}) }),
		// A file's [[channels]] tables are no flags: serve takes them
		// from the file's resolver.
		kong.Configuration(func(r io.Reader) (kong.Resolver, error) {
			res, err := loadTOML(r)
			if err == nil {
				cli.Serve.Channels = res.(*fileResolver).channels
			}
			return res, err
		}),
		kong.Vars(benchVars()),
		// pub and sub take the subject prefix's default from the protocol.
		kong.Vars{"default_prefix": broker.DefaultPrefix},
	)
}

// VersionCmd prints the version.
type VersionCmd struct{}

func (VersionCmd) Run(e *env) error {
	_, err := fmt.Fprintf(e.stdout, "pushgrid %s\n", version)
	return err
}

// Package app holds what the example programs share and none of them is
// about: starting a command, and where a demo keeps its events.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/persistence/postgres"
)

// Main runs the command name: parse reads the flags, writing usage and flag
// errors to stderr (-h prints the usage and exits 0, a bad flag exits 2);
// run gets a context that Ctrl-C cancels, stdout, and a logger of warnings
// and errors to stderr. A run error is printed and exits 1.
func Main[C any](name string, parse func(args []string, usage io.Writer) (C, error), run func(context.Context, io.Writer, *slog.Logger, C) error) {
	cfg, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(ctx, os.Stdout, logger, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		stop()
		os.Exit(1)
	}
}

// Backend is where a demo keeps its events, and where its relay keeps its
// checkpoint and its lease.
type Backend struct {
	Store       persistence.EventStore
	Checkpoints persistence.CheckpointStore
	Lease       persistence.Lease
	// Close releases the store; call it after everything over it closed.
	Close func() error
}

// Memory keeps everything in this process.
func Memory() Backend {
	return Backend{Store: memory.New(), Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), Close: func() error { return nil }}
}

// Postgres connects to url and keeps the events in schema (created with its
// tables on first use; nothing is ever dropped). The store is also the
// relay's checkpoint store and lease — an advisory lock — so a relay in
// another process takes over where this one stopped. A server that does not
// answer gets an error that says how to point the demo elsewhere.
func Postgres(ctx context.Context, url, schema string, logger *slog.Logger) (Backend, error) {
	store, err := postgres.Open(ctx, url, postgres.WithSchema(schema), postgres.WithLogger(logger))
	if errors.Is(err, postgres.ErrUnreachable) {
		return Backend{}, fmt.Errorf("PostgreSQL is not reachable at %s (start it, or pass another -postgres URL): %w", url, err)
	}
	if err != nil {
		return Backend{}, err
	}
	return Backend{Store: store, Checkpoints: store, Lease: store, Close: store.Close}, nil
}

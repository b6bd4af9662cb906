package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/persistence/postgres"
)

// shop is what one process of the order service runs: an actor system and
// an aggregate runtime hosting orders over an event store. Closing a shop
// and opening another over the same store is a process restart in
// miniature: only what is in the store carries over. A shop is safe for
// concurrent use.
type shop struct {
	sys    *actor.System
	rt     *aggregate.Runtime
	orders *aggregate.Type[Order, Command, Event, Env]
}

// openShop starts a shop over store; the store must outlive it.
func openShop(store persistence.EventStore, logger *slog.Logger) (*shop, error) {
	def, err := newDefinition()
	if err != nil {
		return nil, err
	}
	sys := actor.NewSystem(actor.WithLogger(logger))
	// The runtime finds the snapshot store itself: both stores here are
	// also persistence.SnapshotStores.
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(logger))
	// An order's stream is short, so a snapshot every 100 events rarely
	// fires here; for long-lived aggregates it bounds what an activation
	// replays to the events since the last snapshot.
	orders, err := aggregate.Register(rt, def, aggregate.Options{SnapshotEvery: 100})
	if err != nil {
		return nil, errors.Join(err, rt.Close(), sys.Close())
	}
	return &shop{sys: sys, rt: rt, orders: orders}, nil
}

// Close answers the commands in flight, then stops every order actor and
// the actor system. The store stays open.
func (s *shop) Close() error {
	return errors.Join(s.rt.Close(), s.sys.Close())
}

// withShop opens a shop over store, runs fn with it and closes it, whatever
// fn returns.
func withShop(store persistence.EventStore, logger *slog.Logger, fn func(*shop) error) (err error) {
	s, err := openShop(store, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	return fn(s)
}

// openStore opens the event store cfg names. closeStore releases it — for
// PostgreSQL the store's writer, then the connection pool — and must be
// called after every shop over it has closed.
func openStore(ctx context.Context, cfg config, logger *slog.Logger) (store persistence.EventStore, closeStore func() error, err error) {
	switch cfg.store {
	case storeMemory:
		return memory.New(), func() error { return nil }, nil
	case storePostgres:
		// Open creates the schema and its tables if they are missing, so
		// the first run of the demo needs nothing set up.
		pg, err := postgres.Open(ctx, cfg.postgresURL, postgres.WithSchema(cfg.schema), postgres.WithLogger(logger))
		if errors.Is(err, postgres.ErrUnreachable) {
			return nil, nil, fmt.Errorf("PostgreSQL is not reachable (start it, or point -postgres-url or %s at a server): %w", envPostgresURL, err)
		}
		if err != nil {
			return nil, nil, err
		}
		return pg, pg.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown store %q", cfg.store)
}

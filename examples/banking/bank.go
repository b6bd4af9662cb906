package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// Over PostgreSQL (app.Postgres) the store is also the relay's
// checkpoint store and lease. A caveat of pairing that durable checkpoint
// with the in-process bus: an event the relay published but the saga had
// not consumed when the process stopped (Ctrl-C mid-transfer, a crash) is
// gone with the bus, while the checkpoint says it was delivered — that
// transfer's saga never starts. The demo waits for every saga to end before
// it stops; a service uses a bus whose messages outlive the process
// (bus/kafka).

// bank is one process of the banking service: accounts, transfers and the
// transfer saga hosted on an aggregate runtime, and the path that carries
// TransferRequested from the store to the saga — the relay publishing the
// store's feed to an in-process bus, and the saga consuming it. A bank is
// safe for concurrent use.
type bank struct {
	store         persistence.EventStore
	accountEvents *persistence.Registry
	sys           *actor.System
	rt            *aggregate.Runtime
	accounts      *aggregate.Type[Account, AccountCommand, AccountEvent, struct{}]
	transfers     *aggregate.Type[Transfer, TransferCommand, TransferEvent, struct{}]
	sagas         *saga.Saga[Progress, SagaEvent, struct{}]
	bus           *busmemory.Bus
	relay         *relay.Relay
}

// openBank hosts the aggregates and the saga over be. Nothing moves on the
// bus until Run.
func openBank(be app.Backend, logger *slog.Logger) (*bank, error) {
	accountDef, err := newAccountDefinition()
	if err != nil {
		return nil, err
	}
	transferDef, err := newTransferDefinition()
	if err != nil {
		return nil, err
	}
	sagaDef, err := newTransferSaga()
	if err != nil {
		return nil, err
	}
	b := &bank{store: be.Store, accountEvents: accountDef.Events, bus: busmemory.New()}
	b.relay, err = relay.New(relay.Config{
		Store: be.Store, Publisher: b.bus, Checkpoints: be.Checkpoints, Lease: be.Lease,
		Include: domainEvent, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	b.sys = actor.NewSystem(actor.WithLogger(logger))
	b.rt = aggregate.NewRuntime(b.sys, be.Store, aggregate.WithLogger(logger))
	if b.accounts, err = aggregate.Register(b.rt, accountDef, aggregate.Options{}); err == nil {
		if b.transfers, err = aggregate.Register(b.rt, transferDef, aggregate.Options{}); err == nil {
			b.sagas, err = saga.Register(b.rt, sagaDef, nil, saga.Options{})
		}
	}
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

// domainEvent reports whether the relay publishes e: the accounts' and the
// transfers' events are the bank's to share; the saga's own streams — its
// instances' — are bookkeeping that no consumer reads from the bus.
func domainEvent(e persistence.RecordedEvent) bool {
	typ, _, _ := strings.Cut(e.StreamID, "/")
	return typ == accountType || typ == transferType
}

// Run relays the store's feed to the bus and feeds the saga from it until
// ctx ends, then returns nil; if either stops with an error, it stops the
// other and returns the error.
func (b *bank) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var relayErr, sagaErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		if err := b.relay.Run(runCtx); err != nil {
			relayErr = fmt.Errorf("relay: %w", err)
		}
	})
	wg.Go(func() {
		defer cancel()
		if err := b.sagas.Run(runCtx, b.bus); err != nil {
			sagaErr = fmt.Errorf("transfer saga: %w", err)
		}
	})
	wg.Wait()
	return errors.Join(relayErr, sagaErr)
}

// Close answers the commands in flight, then stops every actor — sagas
// waiting on a command included: they resume when the bank opens again. It
// does not close the store.
func (b *bank) Close() error {
	return errors.Join(b.rt.Close(), b.sys.Close())
}

// withBank opens a bank over be, runs it while fn does, then stops and
// closes it — also when fn panics or calls runtime.Goexit (t.Fatal). fn's
// ctx ends early if the bank stops with an error.
func withBank(ctx context.Context, be app.Backend, logger *slog.Logger, fn func(context.Context, *bank) error) (err error) {
	b, err := openBank(be, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- b.Run(ctx)
	}()
	defer func() {
		cancel()
		err = errors.Join(err, <-done, b.Close())
	}()
	return fn(ctx, b)
}

// awaitEnd waits until the saga of transfer id has completed or failed,
// for at most timeout.
func (b *bank) awaitEnd(ctx context.Context, id string, timeout time.Duration) (saga.Instance[Progress], error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, err := b.sagas.Wait(ctx, id)
	if err != nil {
		return inst, fmt.Errorf("transfer %s: saga %s after %v: %w", id, inst.Status, timeout, err)
	}
	return inst, nil
}

// balance returns an account's balance.
func (b *bank) balance(ctx context.Context, id string) (Money, error) {
	res, err := b.accounts.State(ctx, id)
	return res.State.Balance, err
}

// stepEvents returns the events that the given steps of the saga of
// transfer appended to account's stream, by step name. The saga sends a
// step's command under the id saga.CommandID, and the runtime records it in
// the events' metadata.
func (b *bank) stepEvents(ctx context.Context, account, transfer string, steps []string) (map[string][]AccountEvent, error) {
	stored, err := b.store.Load(ctx, b.accounts.Stream(account), 1)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]string, len(steps)) // command id -> step
	for _, step := range steps {
		byID[saga.CommandID(sagaType, transfer, step)] = step
	}
	out := map[string][]AccountEvent{}
	for _, r := range stored {
		step, ok := byID[r.Metadata[persistence.MetadataCommandID]]
		if !ok {
			continue
		}
		e, err := persistence.Decode[AccountEvent](b.accountEvents, r.EventData)
		if err != nil {
			return nil, err
		}
		out[step] = append(out[step], e)
	}
	return out, nil
}

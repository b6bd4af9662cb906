package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestTransferPathsOverPostgres runs every transfer path, one after the
// other, on one bank over PostgreSQL (a fresh schema), with the store's own
// checkpoints and lease for the relay.
func TestTransferPathsOverPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "banking")
	ctx := testContext(t)
	store, err := postgres.New(ctx, pool, postgres.WithSchema(schema), postgres.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() }) // before the schema is dropped and the pool closed
	be := app.Backend{Store: store, Checkpoints: store, Lease: store, Close: store.Close}
	err = withBank(ctx, be, quiet(), func(ctx context.Context, b *bank) error {
		if err := openAccounts(ctx, b); err != nil {
			return err
		}
		for _, p := range transferPaths {
			t.Run(p.name, func(t *testing.T) { checkPath(ctx, t, b, p) })
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := store.LoadCheckpoint(ctx, "relay"); err != nil || pos == 0 {
		t.Errorf("relay checkpoint %d (%v): want it saved in the store when the relay stopped", pos, err)
	}
}

// TestRunTwiceOverPostgres runs main's demo twice on one schema, as two
// invocations of the command would: the second moves no money, its
// commands answered as duplicates.
func TestRunTwiceOverPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	cfg := config{postgresURL: pgtest.URL(), schema: pgtest.Schema(t, pool, "banking")}
	var first, second bytes.Buffer
	if err := run(testContext(t), &first, quiet(), cfg); err != nil {
		t.Fatalf("first run: %v\n%s", err, first.String())
	}
	if err := run(testContext(t), &second, quiet(), cfg); err != nil {
		t.Fatalf("second run: %v\n%s", err, second.String())
	}
	undup := strings.ReplaceAll(second.String(), duplicate(true), "")
	if undup != first.String() {
		t.Errorf("the second run differs beyond its duplicates:\nfirst:\n%s\nsecond:\n%s", first.String(), second.String())
	}
	if n := strings.Count(second.String(), duplicate(true)); n != len(openings)+len(demoTransfers) {
		t.Errorf("second run: %d duplicates, want %d:\n%s", n, len(openings)+len(demoTransfers), second.String())
	}
}

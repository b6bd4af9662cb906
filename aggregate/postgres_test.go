package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

func pgStore(t testing.TB, pool *pgxpool.Pool, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.New(context.Background(), pool, postgres.WithSchema(schema), postgres.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestPostgresTwoActivationsRace is the cluster's worst case on the real
// store: two runtimes (two processes, in effect), each with a live actor for
// the same account, hammered at once.
func TestPostgresTwoActivationsRace(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "agg_race")
	storeA, storeB := pgStore(t, pool, schema), pgStore(t, pool, schema)
	opts := aggregate.Options{MaxAttempts: 100, SnapshotEvery: 7}
	a, b := newFixture(t, storeA, opts), newFixture(t, storeB, opts)
	ctx := ctxT(t)
	const perSide = 60
	var wg sync.WaitGroup
	errs := make(chan error, 4*perSide)
	for _, side := range []*fixture{a, b} {
		for c := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perSide {
					id := "cmd-" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
					if _, err := side.accounts.Send(ctx, "shared", deposit{Amount: 1}, aggregate.WithCommandID(id)); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("command failed: %v", err)
	}
	events, err := storeA.Load(ctx, "account/shared", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides sent the same 120 command ids: each must be applied once.
	if len(events) != 2*perSide {
		t.Fatalf("%d events, want %d (each command id once)", len(events), 2*perSide)
	}
	seen := map[string]bool{}
	for _, e := range events {
		id := e.Metadata[persistence.MetadataCommandID]
		if seen[id] {
			t.Fatalf("command %s applied twice", id)
		}
		seen[id] = true
	}
}

// TestPostgresDownThenBack cuts every connection to the database: callers
// get errors, never false successes, and the aggregate recovers.
func TestPostgresDownThenBack(t *testing.T) {
	direct := pgtest.Pool(t)
	schema := pgtest.Schema(t, direct, "agg_down")
	pool, proxy := pgtest.ProxiedPool(t, nil)
	f := newFixture(t, pgStore(t, pool, schema), aggregate.Options{MinBackoff: time.Second})
	ctx := ctxT(t)
	if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	acked := 1
	proxy.SetDown(true) // the database is gone
	for range 3 {
		res, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1})
		if err == nil {
			t.Fatalf("success reported while the database is unreachable: %+v", res)
		}
		if !errors.Is(err, aggregate.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		f.clock.Advance(time.Minute) // past the back-off
	}
	proxy.SetDown(false) // it comes back: the same aggregate recovers
	res, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1})
	acked++
	if err != nil || res.State.Balance != acked || res.Version != int64(acked) {
		t.Fatalf("after recovery: %+v, %v", res, err)
	}
}

// TestPostgresDurableTimers: two runtimes on one PostgreSQL schema — two
// processes, in effect — whose schedulers share the store's lease. Timers
// armed through either fire once, evicted aggregates included; a
// scheduler's lease passes to the other runtime when its own closes.
func TestPostgresDurableTimers(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "agg_timers")
	storeA, storeB := pgStore(t, pool, schema), pgStore(t, pool, schema)
	clock := testkit.NewManualClock(epoch)
	a := newAlarms(t, storeA, clock, aggregate.Options{MaxLive: 5})
	b := newAlarms(t, storeB, clock, aggregate.Options{MaxLive: 5})
	ctx := ctxT(t)
	var ids []string
	for i := range 50 {
		id := fmt.Sprint("a", i)
		ids = append(ids, id)
		side := a
		if i%2 == 1 {
			side = b
		}
		if _, err := side.alarms.Send(ctx, id, setAlarm{Name: "first", At: epoch.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if _, err := side.alarms.Send(ctx, id, setAlarm{Name: "second", At: epoch.Add(2 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	// The store tells, not the runtimes: a runtime's live activation of an
	// id misses what the other appended.
	clock.Advance(time.Minute)
	waitStoredRings(t, storeB, ids, "first")
	_ = a.rt.Close() // its scheduler, if it held the lease, lets go
	clock.Advance(time.Minute)
	waitStoredRings(t, storeB, ids, "second")
	if timers, err := storeB.Timers(ctx, "alarm", persistence.Timer{}, 10); err != nil || len(timers) != 0 {
		t.Fatalf("timers left: %+v, %v", timers, err)
	}
}

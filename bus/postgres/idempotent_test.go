package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/bus"
	buspg "github.com/composable-go/composable/bus/postgres"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func delivery(id, stream string, version int64) bus.Delivery {
	return bus.Delivery{Message: bus.Message{Key: stream, Event: persistence.RecordedEvent{
		EventData: persistence.EventData{ID: id}, StreamID: stream, Version: version}}}
}

func TestDuplicatesChangeNothing(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "dedup")
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE "`+schema+`".totals (n int)`); err != nil {
		t.Fatal(err)
	}
	dd, err := buspg.NewDeduplicator(ctx, pool, schema, "billing", nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls sync.Map
	h := dd.Handler(func(ctx context.Context, tx pgx.Tx, d bus.Delivery) error {
		calls.Store(d.Event.ID, true)
		_, err := tx.Exec(ctx, `INSERT INTO "`+schema+`".totals VALUES (1)`)
		return err
	})
	// The same event, delivered five times, twice at once.
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h(ctx, delivery("e1", "order/1", 1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := h(ctx, delivery("e2", "order/1", 2)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM "`+schema+`".totals`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows (%v), want 2: one per distinct event", n, err)
	}

	// A failing handler records nothing: the redelivery runs it again.
	fails := true
	flaky := dd.Handler(func(ctx context.Context, tx pgx.Tx, d bus.Delivery) error {
		if fails {
			return errors.New("downstream unavailable")
		}
		_, err := tx.Exec(ctx, `INSERT INTO "`+schema+`".totals VALUES (3)`)
		return err
	})
	if err := flaky(ctx, delivery("e3", "order/1", 3)); err == nil {
		t.Fatal("failure swallowed")
	}
	fails = false
	if err := flaky(ctx, delivery("e3", "order/1", 3)); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM "`+schema+`".totals`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows after the retry, want 3", n)
	}

	// Another consumer is independent; ByStreamVersion ignores ids.
	other, err := buspg.NewDeduplicator(ctx, pool, schema, "audit", buspg.ByStreamVersion)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	oh := other.Handler(func(context.Context, pgx.Tx, bus.Delivery) error { seen++; return nil })
	_ = oh(ctx, delivery("e1", "order/1", 1))
	_ = oh(ctx, delivery("copy-of-e1", "order/1", 1))
	if seen != 1 {
		t.Fatalf("audit saw %d, want 1", seen)
	}
	if err := h(ctx, delivery("", "order/9", 1)); !errors.Is(err, bus.ErrPermanent) {
		t.Fatalf("event without an id: %v, want a permanent error", err)
	}
	if _, err := buspg.NewDeduplicator(ctx, pool, "", "x", nil); !errors.Is(err, buspg.ErrInvalidConfig) {
		t.Fatalf("bad config: %v", err)
	}
}

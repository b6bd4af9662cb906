package saga_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// BenchmarkSagaStarts measures saga starts on PostgreSQL:
//
//	go test -run '^$' -bench SagaStarts -benchtime 5000x ./saga/
//
// 64 callers deliver TransferRequested events for distinct transfers;
// each operation is one start: the instance records its start, arms its
// deadline and the guard of its debit, and dispatches the debit. The
// index=append case also appends to one index stream per start, as starts
// did before the index was replaced by the timer table — the rate of both
// is measured in the same run.
func BenchmarkSagaStarts(b *testing.B) {
	for _, index := range []string{"none", "append"} {
		b.Run("index="+index, func(b *testing.B) {
			pool := pgtest.PoolConfig(b, func(c *pgxpool.Config) { c.MaxConns = 8 })
			store, err := postgres.New(context.Background(), pool, postgres.WithSchema(pgtest.Schema(b, pool, "bench_saga")))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = store.Close() })
			f := newFixtureWith(b, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{})
			def := transferDefinition()
			ctx := context.Background()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						id := fmt.Sprint("t", i)
						if index == "append" { // what Deliver did for a start before
							_, err := store.Append(ctx, "saga-index/transfer", persistence.Any, persistence.EventData{
								ID: "saga-index/transfer/" + id + "/start", Type: "saga.index", SchemaVersion: 1,
								Data: []byte(`{"id":"` + id + `"}`)})
							if err != nil {
								b.Error(err)
								return
							}
						}
						data, err := def.Events.Marshal(TransferRequested{Transfer: id, From: "w" + id, To: "bob", Amount: 1})
						if err != nil {
							b.Error(err)
							return
						}
						data.ID = "requested-" + id
						if err := f.transfers.Deliver(ctx, persistence.RecordedEvent{EventData: data, StreamID: "transfer/" + id}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
		})
	}
}

package aggregate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// BenchmarkTimersFired measures durable timers firing on PostgreSQL, next
// to a baseline in the same run:
//
//	go test -run '^$' -bench TimersFired -benchtime 5000x ./aggregate/
//
// b.N timers, one per aggregate, fall due at once. The scheduler's phase
// fires them through the aggregates: each firing is a command whose event
// and the removal of its timer row commit together (group commit). The
// baseline is the hand-written timer queue: workers loop over SELECT …
// FOR UPDATE SKIP LOCKED of up to 256 due rows of the same table, insert
// one event per row into a table with the event table's keys, delete the
// rows, and commit. It reports both rates and their ratio.
func BenchmarkTimersFired(b *testing.B) {
	pool := benchPool(b)
	ctx := context.Background()
	n := b.N

	// The baseline, on its own schema.
	rawSchema := pgtest.Schema(b, pool, "bench_timers_raw")
	_ = pgStore(b, pool, rawSchema) // creates the timer table
	rawRate := rawTimerQueue(b, pool, rawSchema, n, 1)
	raw4Schema := pgtest.Schema(b, pool, "bench_timers_raw4")
	_ = pgStore(b, pool, raw4Schema)
	raw4Rate := rawTimerQueue(b, pool, raw4Schema, n, 4)

	// The scheduler.
	store := pgStore(b, pool, pgtest.Schema(b, pool, "bench_timers"))
	clock := testkit.NewManualClock(epoch)
	f := newAlarms(b, store, clock, aggregate.Options{MaxLive: max(n, 1)})
	ids := make([]string, n)
	callers(b, 0, n, func(i int) error {
		ids[i] = fmt.Sprint("a", i)
		_, err := f.alarms.Send(ctx, ids[i], setAlarm{Name: "wake", At: epoch.Add(time.Minute)})
		return err
	})
	b.ResetTimer()
	start := time.Now()
	clock.Advance(time.Minute)
	for {
		timers, err := store.Timers(ctx, "alarm", persistence.Timer{}, 1)
		if err != nil {
			b.Fatal(err)
		}
		if len(timers) == 0 {
			break
		}
		time.Sleep(2 * time.Millisecond) // a benchmark's poll, not a test's wait
	}
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(n) / elapsed.Seconds()
	b.ReportMetric(rate, "timers/s")
	b.ReportMetric(rawRate, "raw-timers/s")
	b.ReportMetric(raw4Rate, "raw4-timers/s")
	b.ReportMetric(rate/rawRate, "ratio")
}

// rawTimerQueue fills schema's timer table with n due timers and fires
// them with workers hand-written SKIP LOCKED loops; it returns timers per
// second.
func rawTimerQueue(b *testing.B, pool *pgxpool.Pool, schema string, n, workers int) float64 {
	ctx := context.Background()
	timers := pgx.Identifier{schema, "timers"}.Sanitize()
	events := pgx.Identifier{schema, "raw_events"}.Sanitize()
	createRawEvents(b, pool, events)
	if _, err := pool.Exec(ctx, `INSERT INTO `+timers+` (owner, id, name, due_ns, fire_id)
		SELECT 'alarm', 'a' || g, 'wake', $1, 'timer:alarm/a' || g || ':wake:1' FROM generate_series(1, $2) AS g`,
		epoch.UnixNano(), n); err != nil {
		b.Fatal(err)
	}
	fire := `WITH due AS (
			SELECT owner, id, name, fire_id FROM ` + timers + ` WHERE owner = 'alarm' AND due_ns <= $1
			ORDER BY due_ns LIMIT 256 FOR UPDATE SKIP LOCKED),
		fired AS (
			INSERT INTO ` + events + ` (stream_id, version, event_id, event_type, schema_version, data, metadata)
			SELECT 'alarm/' || id, 2, fire_id || ':0', 'alarm.rang', 1, convert_to('{"Name":"' || name || '"}', 'UTF8'),
				jsonb_build_object('command-id', fire_id) FROM due)
		DELETE FROM ` + timers + ` t USING due WHERE t.owner = due.owner AND t.id = due.id AND t.name = due.name`
	start := time.Now()
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for {
				tag, err := pool.Exec(ctx, fire, epoch.Add(time.Minute).UnixNano())
				if err != nil || tag.RowsAffected() == 0 {
					errs <- err
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

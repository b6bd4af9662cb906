package postgres_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	evpostgres "github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/projection/postgres"
	"github.com/composable-go/composable/projection/projectiontest"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

const (
	catchUpEvents  = 100_000
	catchUpStreams = 1_000
	catchUpBatch   = 500
)

// BenchmarkCatchUp100k measures how fast a projection catches up on
// 100,000 events — each an upsert into a per-stream counter — against a
// baseline of plain pgx doing the same writes in the same transactions,
// measured in the same run. The projection sub-benchmarks report their
// throughput as a multiple of the baseline's (x-baseline) when the baseline
// ran before them.
func BenchmarkCatchUp100k(b *testing.B) {
	pool := pgtest.Pool(b)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	feed, events := catchUpFeed(ctx, b)

	var baseline float64 // the baseline's events/s; 0 until measured
	b.Run("raw-batched-upserts", func(b *testing.B) {
		baseline = benchRaw(ctx, b, pool, events)
	})
	for _, queue := range []bool{true, false} {
		name := "projection-exec"
		if queue {
			name = "projection-queue"
		}
		b.Run(name, func(b *testing.B) {
			eps := benchRunner(ctx, b, pool, feed, queue)
			if baseline > 0 {
				b.ReportMetric(eps/baseline, "x-baseline")
			}
		})
	}
	// The production path: the feed is the PostgreSQL event store's (same
	// server), read in pages while batches are applied.
	b.Run("projection-queue-pgfeed", func(b *testing.B) {
		eps := benchRunner(ctx, b, pool, pgFeed(ctx, b, pool, events), true)
		if baseline > 0 {
			b.ReportMetric(eps/baseline, "x-baseline")
		}
	})
}

// pgFeed returns a PostgreSQL event store holding events, written with
// COPY (setup, not measured).
func pgFeed(ctx context.Context, b *testing.B, pool *pgxpool.Pool, events []persistence.RecordedEvent) *evpostgres.Store {
	b.Helper()
	schema := pgtest.Schema(b, pool, "catchup_feed")
	store, err := evpostgres.New(ctx, pool, evpostgres.WithSchema(schema), evpostgres.WithLogger(testkit.QuietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	rows := make([][]any, len(events))
	for i, e := range events {
		rows[i] = []any{e.GlobalPosition, e.StreamID, e.Version, e.ID, e.Type, int32(1), e.Data}
	}
	_, err = pool.CopyFrom(ctx, pgx.Identifier{schema, "events"},
		[]string{"global_position", "stream_id", "version", "event_id", "event_type", "schema_version", "data"}, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	return store
}

// feed is what the runner reads: an event store that reports its head.
type feed interface {
	persistence.EventStore
	persistence.HeadReader
}

// catchUpFeed returns a memory feed holding the benchmark's events, and
// the events: the i-th in stream "order-" + i%1000. They are appended one
// by one to keep the streams interleaved as in the baseline.
func catchUpFeed(ctx context.Context, b *testing.B) (*evmemory.Store, []persistence.RecordedEvent) {
	b.Helper()
	feed := evmemory.New()
	data := []byte("{}")
	for i := range catchUpEvents {
		_, err := feed.Append(ctx, "order-"+strconv.Itoa(i%catchUpStreams), persistence.Any, persistence.EventData{
			ID: "e" + strconv.Itoa(i+1), Type: "order.touched", Data: data,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	events, err := feed.ReadAll(ctx, 0, catchUpEvents)
	if err != nil {
		b.Fatal(err)
	}
	if len(events) != catchUpEvents {
		b.Fatalf("feed holds %d events, want %d", len(events), catchUpEvents)
	}
	return feed, events
}

// benchRaw applies events with plain pgx: per 500 events, one transaction
// sending a batch of one upsert per event and a checkpoint update. It
// returns the throughput in events/s.
func benchRaw(ctx context.Context, b *testing.B, pool *pgxpool.Pool, events []persistence.RecordedEvent) float64 {
	schema := pgx.Identifier{pgtest.Schema(b, pool, "raw")}.Sanitize()
	counts, checkpoints := schema+".counts", schema+".checkpoints"
	upsert := `INSERT INTO ` + counts + ` AS t (stream, n, last) VALUES ($1, 1, $2)
		ON CONFLICT (stream) DO UPDATE SET n = t.n + 1, last = excluded.last`
	save := `UPDATE ` + checkpoints + ` SET position = $1 WHERE name = 'raw'`
	for range b.N {
		b.StopTimer()
		_, err := pool.Exec(ctx, `DROP TABLE IF EXISTS `+counts+`, `+checkpoints+`;
			CREATE TABLE `+counts+` (stream text PRIMARY KEY, n bigint NOT NULL, last text NOT NULL);
			CREATE TABLE `+checkpoints+` (name text PRIMARY KEY, position bigint NOT NULL);
			INSERT INTO `+checkpoints+` VALUES ('raw', 0)`)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := 0; i < len(events); i += catchUpBatch {
			chunk := events[i:min(i+catchUpBatch, len(events))]
			err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
				batch := &pgx.Batch{}
				for _, e := range chunk {
					batch.Queue(upsert, e.StreamID, e.ID)
				}
				batch.Queue(save, chunk[len(chunk)-1].GlobalPosition)
				return tx.SendBatch(ctx, batch).Close()
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		checkCatchUp(ctx, b, pool, counts, func() (int64, error) {
			var pos int64
			err := pool.QueryRow(ctx, `SELECT position FROM `+checkpoints+` WHERE name = 'raw'`).Scan(&pos)
			return pos, err
		})
	}
	return eventsPerSecond(b)
}

// benchRunner catches a projection.Runner up on feed, its handler queueing
// its upsert or executing it at once, and returns the throughput in
// events/s. Each iteration runs a projection of a new name, which starts
// from nothing.
func benchRunner(ctx context.Context, b *testing.B, pool *pgxpool.Pool, feed feed, queue bool) float64 {
	schema := pgtest.Schema(b, pool, "proj")
	s, err := postgres.New(ctx, pool, postgres.WithSchema(schema))
	if err != nil {
		b.Fatal(err)
	}
	head, err := feed.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	iteration := 0
	for range b.N {
		b.StopTimer()
		iteration++
		name := "catch_up_" + strconv.Itoa(iteration)
		projectiontest.CatchUp(ctx, b, feed, s, counting(name, queue, nil), head, catchUpBatch)
		checkCatchUp(ctx, b, pool, s.Table(name, "counts"), func() (int64, error) { return s.Checkpoint(ctx, name) })
		if err := s.Drop(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	return eventsPerSecond(b)
}

// checkCatchUp fails the benchmark unless the counts table holds every
// event exactly once and the checkpoint is at the last one.
func checkCatchUp(ctx context.Context, b *testing.B, pool *pgxpool.Pool, counts string, checkpoint func() (int64, error)) {
	b.Helper()
	var streams, applied int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(n), 0) FROM `+counts).Scan(&streams, &applied); err != nil {
		b.Fatal(err)
	}
	if streams != catchUpStreams || applied != catchUpEvents {
		b.Fatalf("model holds %d events in %d streams, want %d in %d", applied, streams, catchUpEvents, catchUpStreams)
	}
	pos, err := checkpoint()
	if err != nil {
		b.Fatal(err)
	}
	if pos != catchUpEvents {
		b.Fatalf("checkpoint %d, want %d", pos, catchUpEvents)
	}
}

// eventsPerSecond reports and returns the throughput of the iterations so
// far.
func eventsPerSecond(b *testing.B) float64 {
	if b.Elapsed() <= 0 {
		return 0
	}
	eps := float64(catchUpEvents*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(eps, "events/s")
	return eps
}

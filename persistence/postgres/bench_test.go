package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

// Benchmarks of the store next to raw-pgx baselines on the same server, in
// the same run, so the figures compare as ratios:
//
//	go test -run '^$' -bench 'Append|Baseline' -benchtime 20000x ./persistence/postgres/
//	go test -run '^$' -bench Replay -benchtime 5x ./persistence/postgres/
//
// Append benchmarks: each operation appends one event (200 bytes of data,
// small metadata) to the writer's own stream, and waits until it is durable.
// BaselineInsert1PerTx8Conns is the classic "one INSERT per transaction";
// BaselineUnnest100 commits batches of 100 rows (the same rows the
// 256-writer benchmark appends) with one unnest INSERT on one connection —
// what group commit is measured against. Replay
// benchmarks read one 100,000-event stream whose events each carry their
// own metadata (a causation id per event: the worst case for the store,
// which shares what consecutive events repeat).

var benchData = make([]byte, 200)

var benchMeta = map[string]string{"correlation": "0b9c2f0e-7a1d-4a35-9c4e-3d1f0b2a9e11", "causation": "cmd-1"}

func benchEvent(id string) persistence.EventData {
	return persistence.EventData{ID: id, Type: "bench.event", SchemaVersion: 1, Data: benchData, Metadata: benchMeta}
}

func benchPool(b *testing.B, maxConns int32) *pgxpool.Pool {
	return pgtest.PoolConfig(b, func(c *pgxpool.Config) { c.MaxConns = maxConns })
}

func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchAppend(b, writers, false) })
	}
}

// BenchmarkAppendFenced is BenchmarkAppend with every transaction
// checking a cluster member's fence token (WithFence), next to the
// unfenced store in the same run:
//
//	go test -run '^$' -bench 'Append(Fenced)?/writers=256' -count 5 ./persistence/postgres/
func BenchmarkAppendFenced(b *testing.B) {
	for _, writers := range []int{1, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchAppend(b, writers, true) })
	}
}

func benchAppend(b *testing.B, writers int, fence bool) {
	pool := benchPool(b, 8)
	schema := pgtest.Schema(b, pool, "bench_append")
	var opts []Option
	if fence {
		members, err := New(context.Background(), pool, WithSchema(schema), WithLogger(quiet()))
		if err != nil {
			b.Fatal(err)
		}
		m, err := members.Join(context.Background(), membership.Member{Name: "bench"}, time.Hour)
		_ = members.Close()
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, WithFence(func() (string, int64, bool) { return m.ID, m.Generation, true }))
	}
	s, err := New(context.Background(), pool, append(opts, WithSchema(schema), WithLogger(quiet()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Int64
	b.SetParallelism(max(1, writers/2)) // GOMAXPROCS is 2 on the reference machine
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := next.Add(1)
		stream := fmt.Sprintf("writer-%d", w)
		i := 0
		for pb.Next() {
			i++
			if _, err := s.Append(context.Background(), stream, persistence.Any, benchEvent(fmt.Sprintf("%s-%d", stream, i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if n := s.batches.Load(); n > 0 {
		b.ReportMetric(float64(s.batchedEvents.Load())/float64(n), "events/batch")
	}
}

// rawTable creates a table shaped like the events table, without the store.
func rawTable(b *testing.B, pool *pgxpool.Pool) string {
	schema := pgtest.Schema(b, pool, "bench_raw")
	table := pgx.Identifier{schema, "events"}.Sanitize()
	_, err := pool.Exec(context.Background(), `CREATE TABLE `+table+` (
		global_position bigserial PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL,
		event_id text NOT NULL UNIQUE, event_type text NOT NULL, schema_version int NOT NULL,
		data bytea NOT NULL, metadata jsonb, recorded_at timestamptz NOT NULL DEFAULT now(),
		UNIQUE (stream_id, version))`)
	if err != nil {
		b.Fatal(err)
	}
	return table
}

const rawMeta = `{"correlation": "0b9c2f0e-7a1d-4a35-9c4e-3d1f0b2a9e11", "causation": "cmd-1"}`

func BenchmarkBaselineInsert1PerTx8Conns(b *testing.B) {
	pool := benchPool(b, 8)
	table := rawTable(b, pool)
	var next atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := next.Add(1)
		i := 0
		for pb.Next() {
			i++
			_, err := pool.Exec(context.Background(), "INSERT INTO "+table+
				" (stream_id, version, event_id, event_type, schema_version, data, metadata) VALUES ($1, $2, $3, 'bench.event', 1, $4, $5)",
				fmt.Sprintf("w-%d", w), i, fmt.Sprintf("w-%d-%d", w, i), benchData, rawMeta)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkBaselineUnnest100(b *testing.B) {
	pool := benchPool(b, 1)
	table := rawTable(b, pool)
	const batch = 100
	insert := "INSERT INTO " + table + " (stream_id, version, event_id, event_type, schema_version, data, metadata) " +
		"SELECT s, v, i, 'bench.event', 1, d, m::jsonb FROM unnest($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::text[]) AS u(s, v, i, d, m)"
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		streams, versions, ids := make([]string, n), make([]int64, n), make([]string, n)
		data, meta := make([][]byte, n), make([]string, n)
		for i := range n {
			// The same rows as BenchmarkAppend/writers=256: 256 streams,
			// round robin, so both pay for the same index locality.
			k := done + i
			streams[i], versions[i] = fmt.Sprintf("writer-%d", k%256), int64(k/256+1)
			ids[i] = fmt.Sprintf("writer-%d-%d", k%256, k/256+1)
			data[i], meta[i] = benchData, rawMeta
		}
		if _, err := pool.Exec(context.Background(), insert, streams, versions, ids, data, meta); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

const replayEvents = 100_000

// replayFixture returns a store holding one stream of 100,000 events,
// written with COPY (setup, not measured).
func replayFixture(b *testing.B) (*Store, *pgxpool.Pool, string) {
	pool := benchPool(b, 4)
	schema := pgtest.Schema(b, pool, "bench_replay")
	s, err := New(context.Background(), pool, WithSchema(schema), WithLogger(quiet()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	rows := make([][]any, replayEvents)
	for i := range rows {
		rows[i] = []any{int64(i + 1), "replay", int64(i + 1), fmt.Sprintf("r-%d", i), "bench.event", int32(1), benchData, fmt.Sprintf(`{"correlation": "0b9c2f0e-7a1d-4a35-9c4e-3d1f0b2a9e11", "causation": "cmd-%d"}`, i)}
	}
	_, err = pool.CopyFrom(context.Background(), pgx.Identifier{schema, "events"},
		[]string{"global_position", "stream_id", "version", "event_id", "event_type", "schema_version", "data", "metadata"},
		pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	return s, pool, schema
}

func BenchmarkReplay(b *testing.B) {
	s, pool, schema := replayFixture(b)
	b.Run("store.Load", func(b *testing.B) {
		for range b.N {
			events, err := s.Load(context.Background(), "replay", 1)
			if err != nil || len(events) != replayEvents {
				b.Fatalf("%d events, %v", len(events), err)
			}
		}
		b.ReportMetric(float64(b.N*replayEvents)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("store.ReadAll", func(b *testing.B) {
		for range b.N {
			n, after := 0, int64(0)
			for {
				page, err := s.ReadAll(context.Background(), after, 1000)
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				n += len(page)
				after = page[len(page)-1].GlobalPosition
			}
			if n != replayEvents {
				b.Fatalf("%d events", n)
			}
		}
		b.ReportMetric(float64(b.N*replayEvents)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("baseline.Select", func(b *testing.B) {
		query := "SELECT " + columns + " FROM " + pgx.Identifier{schema, "events"}.Sanitize() + " WHERE stream_id = $1 AND version >= $2 ORDER BY version"
		for range b.N {
			rows, err := pool.Query(context.Background(), query, "replay", 1)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			var (
				pos, version    int64
				stream, id, typ string
				schemaVersion   int32
				data, meta      []byte
				recordedAt      time.Time
			)
			for rows.Next() {
				if err := rows.Scan(&pos, &stream, &version, &id, &typ, &schemaVersion, &data, &meta, &recordedAt); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if rows.Err() != nil || n != replayEvents {
				b.Fatalf("%d rows, %v", n, rows.Err())
			}
		}
		b.ReportMetric(float64(b.N*replayEvents)/b.Elapsed().Seconds(), "events/s")
	})
}

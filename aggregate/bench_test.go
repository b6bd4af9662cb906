package aggregate_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// Benchmarks on PostgreSQL, each next to its baseline in the same run:
//
//	go test -run '^$' -bench Interleaved -benchtime 200000x ./aggregate/
//	go test -run '^$' -bench 'Commands$|Baseline' -benchtime 100000x ./aggregate/
//
// BenchmarkCommandsInterleaved alternates the commands with the raw-pgx
// group commit in one process (see its comment); the others run alone.
// BenchmarkCommands: 256 concurrent callers send deposits to 1,000 account
// aggregates; each operation is one persisted command (handle, append,
// apply, reply), with the default options (a snapshot every 100 events).
// BenchmarkBaselineAppend does the same appends straight to the event store
// (its group commit, no actors): the aggregate layer's cost is the ratio of
// the two. Its rows=same case writes the rows the aggregate writes (a
// time-ordered UUID and the command type in the metadata); rows=minimal
// writes short sequential ids and no metadata, which the database takes
// faster. All report p50/p99 latency per operation.
// BenchmarkCommandsInMemory runs the commands on the in-memory store.

const (
	benchCallers    = 256
	benchAggregates = 1000
)

func benchPool(b *testing.B) *pgxpool.Pool {
	return pgtest.PoolConfig(b, func(c *pgxpool.Config) { c.MaxConns = 8 })
}

// runCallers runs op from benchCallers goroutines until b.N operations
// completed, and reports their rate and latency.
func runCallers(b *testing.B, op func(i int) error) {
	b.ResetTimer()
	latencies := callers(b, 0, b.N, op)
	b.StopTimer()
	reportLatency(b, "", latencies)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// callers runs op for i in [from, to) from benchCallers goroutines and
// returns each operation's latency.
func callers(b *testing.B, from, to int, op func(i int) error) []time.Duration {
	next := atomic.Int64{}
	next.Store(int64(from))
	latencies := make([][]time.Duration, benchCallers)
	var wg sync.WaitGroup
	for c := range benchCallers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= to {
					return
				}
				start := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				latencies[c] = append(latencies[c], time.Since(start))
			}
		})
	}
	wg.Wait()
	return slices.Concat(latencies...)
}

// reportLatency reports the median and 99th percentile of latencies, in
// metrics named with prefix.
func reportLatency(b *testing.B, prefix string, latencies []time.Duration) {
	slices.Sort(latencies)
	if len(latencies) > 0 {
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, prefix+"p50-ms")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, prefix+"p99-ms")
	}
}

func BenchmarkCommands(b *testing.B) {
	pool := benchPool(b)
	benchCommands(b, pgStore(b, pool, pgtest.Schema(b, pool, "bench_agg")))
}

// BenchmarkCommandsInMemory is BenchmarkCommands on the in-memory store:
// what the actors, the codec and the runtime cost without a database (the
// store's own lock dominates on two cores).
func BenchmarkCommandsInMemory(b *testing.B) {
	benchCommands(b, memory.New())
}

func benchCommands(b *testing.B, store persistence.EventStore) {
	op, stop := startCommands(b, store)
	defer stop()
	runCallers(b, op)
}

// startCommands starts a runtime hosting benchAggregates live accounts on
// store, and returns an operation sending command i and a stop function.
func startCommands(b *testing.B, store persistence.EventStore) (op func(i int) error, stop func()) {
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(quiet()))
	stop = func() {
		_ = rt.Close()
		_ = sys.Close()
	}
	accounts, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{})
	if err != nil {
		stop()
		b.Fatal(err)
	}
	ctx := context.Background()
	// Steady state: the aggregates are live before the clock starts (their
	// activation is measured by BenchmarkRehydrate).
	for i := range benchAggregates {
		if _, err := accounts.State(ctx, fmt.Sprint("acct-", i)); err != nil {
			stop()
			b.Fatal(err)
		}
	}
	return func(i int) error {
		_, err := accounts.Send(ctx, fmt.Sprint("acct-", i%benchAggregates), deposit{Amount: 1})
		return err
	}, stop
}

// BenchmarkCommandsInterleaved runs BenchmarkCommands and
// BenchmarkBaselineRawGroupCommit in one process, in alternating rounds
// of benchRound operations each, so that both see the same machine (a
// shared one drifts by more than the difference between separate runs).
// It reports both rates, their ratio, the CPU time this process spent per
// operation (the Go side's cost; PostgreSQL's is not counted) and both
// latencies; b.N operations run on each side.
func BenchmarkCommandsInterleaved(b *testing.B) {
	pool := benchPool(b)
	cmd, stop := startCommands(b, pgStore(b, pool, pgtest.Schema(b, pool, "bench_agg")))
	defer stop()
	raw, stopRaw := startRawGroupCommit(b, pool)
	defer stopRaw()
	var cmdTime, rawTime, cmdCPU, rawCPU time.Duration
	var cmdLat, rawLat []time.Duration
	b.ResetTimer()
	for from, round := 0, 0; from < b.N; from, round = from+benchRound, round+1 {
		to := min(from+benchRound, b.N)
		sides := []func(){
			func() {
				start, cpu := time.Now(), cpuTime()
				cmdLat = append(cmdLat, callers(b, from, to, cmd)...)
				cmdTime, cmdCPU = cmdTime+time.Since(start), cmdCPU+cpuTime()-cpu
			},
			func() {
				start, cpu := time.Now(), cpuTime()
				rawLat = append(rawLat, callers(b, from, to, raw)...)
				rawTime, rawCPU = rawTime+time.Since(start), rawCPU+cpuTime()-cpu
			},
		}
		if round%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			side()
		}
	}
	b.StopTimer()
	cmdRate, rawRate := float64(b.N)/cmdTime.Seconds(), float64(b.N)/rawTime.Seconds()
	b.ReportMetric(cmdRate, "cmd-ops/s")
	b.ReportMetric(rawRate, "raw-ops/s")
	b.ReportMetric(cmdRate/rawRate, "ratio")
	b.ReportMetric(float64(cmdCPU.Microseconds())/float64(b.N), "cmd-cpu-us/op")
	b.ReportMetric(float64(rawCPU.Microseconds())/float64(b.N), "raw-cpu-us/op")
	reportLatency(b, "cmd-", cmdLat)
	reportLatency(b, "raw-", rawLat)
}

// benchRound is the number of operations in one round of
// BenchmarkCommandsInterleaved.
const benchRound = 10_000

func BenchmarkBaselineAppend(b *testing.B) {
	for _, rows := range []string{"same", "minimal"} {
		b.Run("rows="+rows, func(b *testing.B) {
			pool := benchPool(b)
			store := pgStore(b, pool, pgtest.Schema(b, pool, "bench_agg_base"))
			reg := accountRegistry()
			ctx := context.Background()
			meta := map[string]string{persistence.MetadataCommandType: "aggregate_test.deposit"}
			runCallers(b, func(i int) error {
				d, err := reg.Marshal(Deposited{Amount: 1})
				if err != nil {
					return err
				}
				if rows == "same" {
					d.ID, d.Metadata = uuid.Must(uuid.NewV7()).String(), meta
				} else {
					d.ID = fmt.Sprint("e-", i)
				}
				_, err = store.Append(ctx, fmt.Sprint("account/acct-", i%benchAggregates), persistence.Any, d)
				return err
			})
		})
	}
}

// BenchmarkBaselineRawGroupCommit is group commit written with raw pgx and
// nothing else: the callers queue the aggregate's rows (a time-ordered UUID,
// the command type in the metadata) for one goroutine, which inserts what is
// queued with one unnest INSERT per transaction into a table with the event
// table's columns and unique keys, numbering each stream's versions itself,
// and answers the callers. No advisory lock, no version checks, no retries:
// the floor of what an event store with group commit costs.
func BenchmarkBaselineRawGroupCommit(b *testing.B) {
	op, stop := startRawGroupCommit(b, benchPool(b))
	defer stop()
	runCallers(b, op)
}

// startRawGroupCommit starts the raw group commit of
// BenchmarkBaselineRawGroupCommit and returns an operation appending event
// i and a stop function.
func startRawGroupCommit(b *testing.B, pool *pgxpool.Pool) (op func(i int) error, stop func()) {
	schema := pgtest.Schema(b, pool, "bench_agg_raw")
	table := pgx.Identifier{schema, "events"}.Sanitize()
	ctx := context.Background()
	createRawEvents(b, pool, table)
	insert := "INSERT INTO " + table + " (stream_id, version, event_id, event_type, schema_version, data, metadata) " +
		"SELECT s, v, i, t, sv, d, m::jsonb FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::bytea[], $7::text[]) AS u(s, v, i, t, sv, d, m)"
	type row struct {
		stream string
		event  persistence.EventData
		done   chan error
	}
	queue := make(chan *row, benchCallers)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		versions := map[string]int64{}
		for r := range queue {
			batch := []*row{r}
		collect:
			for len(batch) < 1000 {
				select {
				case r, ok := <-queue:
					if !ok {
						break collect
					}
					batch = append(batch, r)
				default:
					break collect
				}
			}
			n := len(batch)
			streams, vs, ids, types := make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
			svs, data, meta := make([]int32, n), make([][]byte, n), make([]string, n)
			for k, r := range batch {
				versions[r.stream]++
				streams[k], vs[k], ids[k], types[k] = r.stream, versions[r.stream], r.event.ID, r.event.Type
				svs[k], data[k], meta[k] = int32(r.event.SchemaVersion), r.event.Data, `{"command-type": "aggregate_test.deposit"}`
			}
			_, err := pool.Exec(ctx, insert, streams, vs, ids, types, svs, data, meta)
			for _, r := range batch {
				r.done <- err
			}
		}
	}()
	reg := accountRegistry()
	return func(i int) error {
			d, err := reg.Marshal(Deposited{Amount: 1})
			if err != nil {
				return err
			}
			d.ID = uuid.Must(uuid.NewV7()).String()
			r := &row{stream: fmt.Sprint("account/acct-", i%benchAggregates), event: d, done: make(chan error, 1)}
			queue <- r
			return <-r.done
		}, func() {
			close(queue)
			<-writerDone
		}
}

// BenchmarkRehydrate measures activating an aggregate with 10,000 events,
// from the stream alone and from a snapshot at version 10,000. Run it with a
// small -benchtime (e.g. 20x): each iteration starts a runtime.
func BenchmarkRehydrate(b *testing.B) {
	for _, snapshot := range []bool{false, true} {
		b.Run(fmt.Sprintf("snapshot=%v", snapshot), func(b *testing.B) {
			pool := benchPool(b)
			store := pgStore(b, pool, pgtest.Schema(b, pool, "bench_rehydrate"))
			ctx := context.Background()
			reg := accountRegistry()
			const n = 10_000
			batch := make([]persistence.EventData, 0, 1000)
			for i := range n {
				d, _ := reg.Marshal(Deposited{Amount: 1})
				d.ID = fmt.Sprint("r-", i)
				batch = append(batch, d)
				if len(batch) == cap(batch) {
					if _, err := store.Append(ctx, "account/big", persistence.Any, batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			opts := aggregate.Options{SnapshotEvery: -1}
			if snapshot {
				opts.SnapshotEvery = n // the first activation writes it
				seed, stop := startBenchRuntime(b, store, opts)
				if _, err := seed.Send(ctx, "big", deposit{Amount: 0}); err != nil {
					b.Fatal(err)
				}
				testkit.Eventually(b, 10*time.Second, func() bool {
					s, ok, _ := store.LoadSnapshot(ctx, "account/big")
					return ok && s.Version > n
				})
				stop()
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				accounts, stop := startBenchRuntime(b, store, opts)
				b.StartTimer()
				res, err := accounts.State(ctx, "big")
				b.StopTimer()
				stop()
				b.StartTimer()
				if err != nil || res.State.Balance != n {
					b.Fatalf("%+v, %v", res.State, err)
				}
			}
		})
	}
}

// startBenchRuntime starts a runtime hosting accounts; stop closes it.
func startBenchRuntime(b *testing.B, store persistence.EventStore, opts aggregate.Options) (*aggregate.Type[account, command, event, env], func()) {
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(quiet()))
	t, err := aggregate.Register(rt, accountDefinition(), opts)
	if err != nil {
		b.Fatal(err)
	}
	return t, func() {
		_ = rt.Close()
		_ = sys.Close()
	}
}

// createRawEvents creates table with the event table's columns and unique
// keys, for the raw baselines.
func createRawEvents(b *testing.B, pool *pgxpool.Pool, table string) {
	if _, err := pool.Exec(context.Background(), `CREATE TABLE `+table+` (
		global_position bigserial PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL,
		event_id text NOT NULL UNIQUE, event_type text NOT NULL, schema_version int NOT NULL,
		data bytea NOT NULL, metadata jsonb, recorded_at timestamptz NOT NULL DEFAULT now(),
		UNIQUE (stream_id, version))`); err != nil {
		b.Fatal(err)
	}
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	evpostgres "github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/postgres"
	"github.com/composable-go/composable/projection/projectiontest"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// go-metrics (through sarama, in the bus test) starts a process-wide
// ticker it never stops.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// newStore returns a store in a schema of its own; its models' schemas are
// dropped at cleanup with it.
func newStore(t *testing.T, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	direct := pgtest.Pool(t)
	schema := pgtest.Schema(t, direct, "proj")
	t.Cleanup(func() { pgtest.DropSchemas(t, direct, schema+"_") })
	s, err := postgres.New(ctxFor(t), pool, postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setupLists creates the suite's model: a list of values per key.
func setupLists(ctx context.Context, tx *postgres.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE lists (key text NOT NULL, seq bigserial PRIMARY KEY, value text NOT NULL)`)
	return err
}

// readList reads the list under key in the current model of name, nil when
// the model has no tables yet.
func readList(ctx context.Context, pool *pgxpool.Pool, s *postgres.Store, name, key string) ([]string, error) {
	rows, err := pool.Query(ctx, "SELECT value FROM "+s.Table(name, "lists")+" WHERE key = $1 ORDER BY seq", key)
	var list []string
	if err == nil {
		list, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01") { // no schema, no table
		return nil, nil
	}
	return list, err
}

// TestConformance runs the suite twice: handlers that queue their writes
// (sent with the checkpoint in one round trip) and handlers that execute
// them at once. The store's connections go through a proxy the suite cuts.
func TestConformance(t *testing.T) {
	for _, mode := range []string{"queue", "exec"} {
		t.Run(mode, func(t *testing.T) {
			pool := pgtest.Pool(t)
			projectiontest.Run(t, func(t *testing.T) projectiontest.Harness[*postgres.Tx] {
				through, proxy := pgtest.ProxiedPool(t, nil) // the store's connections, which Cut drops
				s := newStore(t, through)
				return projectiontest.Harness[*postgres.Tx]{
					Cut:   proxy.CutAll,
					Store: s,
					Setup: setupLists,
					Append: func(ctx context.Context, tx *postgres.Tx, key, value string) error {
						const insert = `INSERT INTO lists (key, value) VALUES ($1, $2)`
						if mode == "queue" {
							tx.Queue(insert, key, value)
							return nil
						}
						_, err := tx.Exec(ctx, insert, key, value)
						return err
					},
					Read: func(ctx context.Context, name, key string) ([]string, error) {
						return readList(ctx, pool, s, name, key)
					},
				}
			})
		})
	}
}

// counting is a projection that counts events per stream in a table with a
// primary key, and runs hook (if set) before each event.
func counting(name string, queue bool, hook func(ctx context.Context, tx *postgres.Tx, e persistence.RecordedEvent) error) projection.Projection[*postgres.Tx] {
	return projection.Projection[*postgres.Tx]{
		Name: name,
		Setup: func(ctx context.Context, tx *postgres.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE counts (stream text PRIMARY KEY, n bigint NOT NULL, last text NOT NULL)`)
			return err
		},
		Handle: func(ctx context.Context, tx *postgres.Tx, e persistence.RecordedEvent) error {
			if hook != nil {
				if err := hook(ctx, tx, e); err != nil {
					return err
				}
			}
			const upsert = `INSERT INTO counts (stream, n, last) VALUES ($1, 1, $2)
				ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1, last = excluded.last`
			if queue {
				tx.Queue(upsert, e.StreamID, e.ID)
				return nil
			}
			_, err := tx.Exec(ctx, upsert, e.StreamID, e.ID)
			return err
		},
	}
}

// counts reads the counting model of name: events per stream.
func counts(t *testing.T, pool *pgxpool.Pool, s *postgres.Store, name string) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(ctxFor(t), "SELECT stream, n FROM "+s.Table(name, "counts"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var stream string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&stream, &n}, func() error { out[stream] = n; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantCounts is the counting model after events.
func wantCounts(events []persistence.RecordedEvent) map[string]int64 {
	out := map[string]int64{}
	for _, e := range events {
		out[e.StreamID]++
	}
	return out
}

func checkpoint(t *testing.T, s *postgres.Store, name string) int64 {
	t.Helper()
	pos, err := s.Checkpoint(ctxFor(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func assertModel(t *testing.T, pool *pgxpool.Pool, s *postgres.Store, name string, events []persistence.RecordedEvent) {
	t.Helper()
	got, want := counts(t, pool, s, name), wantCounts(events)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("model %v, want %v", got, want)
	}
	var last int64
	if len(events) > 0 {
		last = events[len(events)-1].GlobalPosition
	}
	if pos := checkpoint(t, s, name); pos != last {
		t.Fatalf("checkpoint %d, want %d", pos, last)
	}
}

// TestRefusedStatementsAreHandlerFailures: a statement the database refuses
// as invalid is the handler's failure, named by the event that issued it —
// also when the statement was queued and failed later, in the batch's round
// trip.
func TestRefusedStatementsAreHandlerFailures(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 8)
	for _, queue := range []bool{true, false} {
		name := fmt.Sprintf("refused_%v", queue)
		bad := counting(name, queue, func(ctx context.Context, tx *postgres.Tx, e persistence.RecordedEvent) error {
			if e.GlobalPosition != 4 {
				return nil
			}
			const wrong = `INSERT INTO counts (stream, n, last) VALUES ($1, 1, NULL)` // violates NOT NULL
			if queue {
				tx.Queue(wrong, e.StreamID)
				return nil
			}
			_, err := tx.Exec(ctx, wrong, e.StreamID)
			return err
		})
		err := s.Apply(ctx, bad, events)
		var ae *projection.ApplyError
		var pgErr *pgconn.PgError
		if !errors.As(err, &ae) || ae.Index != 3 || ae.Event.GlobalPosition != 4 || !errors.As(err, &pgErr) || pgErr.Code != "23502" {
			t.Fatalf("queue=%v: Apply = %v, want an *ApplyError at index 3 wrapping the not-null violation", queue, err)
		}
		if pos := checkpoint(t, s, name); pos != 0 {
			t.Fatalf("queue=%v: checkpoint %d after a failed batch", queue, pos)
		}
	}
}

// TestSeparateReadDatabase keeps the read model in a database of its own,
// fed from the event store in another.
func TestSeparateReadDatabase(t *testing.T) {
	const readDB = "composable_projection_read"
	admin := pgtest.Pool(t)
	ctx := ctxFor(t)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+readDB); err != nil {
		var pgErr *pgconn.PgError
		// 42P04: it exists; 23505: another package created it at the same
		// moment.
		if !errors.As(err, &pgErr) || (pgErr.Code != "42P04" && pgErr.Code != "23505") {
			t.Fatalf("create database %s: %v", readDB, err)
		}
	}
	readPool := pgtest.PoolConfig(t, func(c *pgxpool.Config) { c.ConnConfig.Database = readDB })
	s := newStoreIn(t, readPool)

	events, err := evpostgres.New(ctx, admin, evpostgres.WithSchema(pgtest.Schema(t, admin, "projfeed")))
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	for i := range 30 {
		if _, err := events.Append(ctx, "s-"+strconv.Itoa(i%3), persistence.Any, persistence.EventData{ID: "e" + strconv.Itoa(i), Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := projection.NewRunner(events, s, counting("apart", true, nil), projection.Options{
		Lease: events, PollInterval: 5 * time.Millisecond, Logger: testkit.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	projectiontest.Start(t, r)
	head, err := events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	all, err := events.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	assertModel(t, readPool, s, "apart", all)
	// The model is in the read database only.
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", s.Schema("apart")).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the model's schema is in the event store's database (%d, %v)", n, err)
	}
}

// newStoreIn is newStore for a pool on another database.
func newStoreIn(t *testing.T, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	schema := "proj_" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	ctx := ctxFor(t)
	t.Cleanup(func() {
		pgtest.DropSchemas(t, pool, schema+"_")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop %s: %v", schema, err)
		}
	})
	s, err := postgres.New(ctx, pool, postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDrop deletes a projection's model, checkpoint and dead letters; it is
// built afresh afterwards.
func TestDrop(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	p := counting("dropped", true, nil)
	if err := s.Apply(ctx, p, events[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "dropped", events[3], errors.New("bad")); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	if pos := checkpoint(t, s, "dropped"); pos != 0 {
		t.Fatalf("checkpoint %d after Drop", pos)
	}
	if dl, err := s.DeadLetters(ctx, "dropped"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v (%v) after Drop", dl, err)
	}
	if err := s.Apply(ctx, p, events); err != nil {
		t.Fatal(err)
	}
	assertModel(t, pool, s, "dropped", events)
}

func TestInvalidInput(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := ctxFor(t)
	for _, schema := range []string{"", "a_schema_name_that_is_too_long"} {
		if _, err := postgres.New(ctx, pool, postgres.WithSchema(schema)); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("New(schema %q) = %v, want ErrInvalid", schema, err)
		}
	}
	s := newStore(t, pool)
	events := projectiontest.Events(t, 2)
	for _, name := range []string{"", "Upper", "a__b", "x; DROP TABLE y"} {
		if err := s.Apply(ctx, counting(name, true, nil), events); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("Apply(%q) = %v, want ErrInvalid", name, err)
		}
		if err := s.DeadLetter(ctx, name, events[0], errors.New("x")); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("DeadLetter(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if err := s.FinishRebuild(ctx, "never", projection.RebuildName("never")); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("FinishRebuild without a rebuild = %v, want ErrInvalid", err)
	}
}

package cached_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/cached"
	"github.com/composable-go/composable/projection/postgres"
	"github.com/composable-go/composable/projection/projectiontest"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
	"github.com/composable-go/composable/testkit/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const ttl = 30 * time.Second

// newStore returns a store in a schema and under a key prefix of the
// test's own.
func newStore(t *testing.T, pool *pgxpool.Pool, rdb *goredis.Client) *cached.Store {
	t.Helper()
	direct := pgtest.Pool(t)
	schema := pgtest.Schema(t, direct, "cach")
	t.Cleanup(func() { pgtest.DropSchemas(t, direct, schema+"_") })
	return openStore(t, pool, rdb, schema, redistest.Prefix(t, rdb, "cache"))
}

// openStore opens a store in schema and under prefix, which may hold
// another store's data (a restarted process).
func openStore(t *testing.T, pool *pgxpool.Pool, rdb *goredis.Client, schema, prefix string) *cached.Store {
	t.Helper()
	s, err := cached.New(ctxFor(t), pool, rdb, cached.Options{
		Postgres: []postgres.Option{postgres.WithSchema(schema)},
		Prefix:   prefix,
		TTL:      ttl,
		Logger:   testkit.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func setupLists(ctx context.Context, tx *cached.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE lists (key text NOT NULL, seq bigserial PRIMARY KEY, value text NOT NULL)`)
	return err
}

// appendList appends value to the list under key and invalidates its
// cache entry.
func appendList(_ context.Context, tx *cached.Tx, key, value string) error {
	tx.Queue(`INSERT INTO lists (key, value) VALUES ($1, $2)`, key, value)
	tx.Invalidate(key)
	return nil
}

// loadList loads the list under key; nil when the model has no table yet.
func loadList(key string) func(ctx context.Context, tx pgx.Tx) ([]string, error) {
	return func(ctx context.Context, tx pgx.Tx) ([]string, error) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('lists') IS NOT NULL`).Scan(&exists); err != nil || !exists {
			return nil, err
		}
		rows, err := tx.Query(ctx, `SELECT value FROM lists WHERE key = $1 ORDER BY seq`, key)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
}

// TestConformance reads every model through the cache, so a missing or
// late invalidation fails the suite.
func TestConformance(t *testing.T) {
	rdb := redistest.Client(t)
	projectiontest.Run(t, func(t *testing.T) projectiontest.Harness[*cached.Tx] {
		through, proxy := pgtest.ProxiedPool(t, nil) // the store's PostgreSQL connections, which Cut drops
		s := newStore(t, through, rdb)
		return projectiontest.Harness[*cached.Tx]{
			Store:  s,
			Cut:    proxy.CutAll,
			Setup:  setupLists,
			Append: appendList,
			Read: func(ctx context.Context, name, key string) ([]string, error) {
				return cached.GetJSON(ctx, s, name, key, loadList(key))
			},
		}
	})
}

func lists(name string) projection.Projection[*cached.Tx] {
	return projection.Projection[*cached.Tx]{
		Name:  name,
		Setup: setupLists,
		Handle: func(ctx context.Context, tx *cached.Tx, e persistence.RecordedEvent) error {
			return appendList(ctx, tx, e.StreamID, e.ID)
		},
	}
}

func get(t *testing.T, s *cached.Store, name, key string) []string {
	t.Helper()
	v, err := cached.GetJSON(ctxFor(t), s, name, key, loadList(key))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ids(events []persistence.RecordedEvent, stream string) []string {
	var out []string
	for _, e := range events {
		if e.StreamID == stream {
			out = append(out, e.ID)
		}
	}
	return out
}

// TestHitsComeFromRedis: a second read does not touch PostgreSQL, and the
// entry carries the TTL.
func TestHitsComeFromRedis(t *testing.T) {
	pool, rdb := pgtest.Pool(t), redistest.Client(t)
	s := newStore(t, pool, rdb)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	if err := s.Apply(ctx, lists("hits"), events); err != nil {
		t.Fatal(err)
	}
	loads := 0
	load := func(ctx context.Context, tx pgx.Tx) ([]string, error) { loads++; return loadList("s-0")(ctx, tx) }
	for range 3 {
		v, err := cached.GetJSON(ctx, s, "hits", "s-0", load)
		if err != nil || !slices.Equal(v, ids(events, "s-0")) {
			t.Fatalf("Get = %v, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("PostgreSQL read %d times for 3 reads, want 1", loads)
	}
	keys, err := rdb.Keys(ctx, "*{hits}:*s-0").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("cache keys %v (%v)", keys, err)
	}
	// The entry replaced the tombstone of the batch's invalidation, and
	// keeps its remaining time (up to twice the TTL).
	if left, err := rdb.PTTL(ctx, keys[0]).Result(); err != nil || left <= 0 || left > 2*ttl {
		t.Fatalf("entry TTL %v (%v), want within (0, %v]", left, err, 2*ttl)
	}
}

// TestSlowReaderCannotCacheStaleData: a reader that read the model before
// a batch committed, and tries to cache its result after the batch's
// invalidation — and after a faster reader cached the fresh result — is
// refused; the next read sees the batch.
func TestSlowReaderCannotCacheStaleData(t *testing.T) {
	pool, rdb := pgtest.Pool(t), redistest.Client(t)
	s := newStore(t, pool, rdb)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	if err := s.Apply(ctx, lists("race"), events[:3]); err != nil {
		t.Fatal(err)
	}
	read, release := make(chan struct{}), make(chan struct{})
	stale := make(chan []string, 1)
	go func() {
		v, err := cached.GetJSON(ctx, s, "race", "s-0", func(ctx context.Context, tx pgx.Tx) ([]string, error) {
			v, err := loadList("s-0")(ctx, tx)
			close(read)
			<-release
			return v, err
		})
		if err != nil {
			t.Error(err)
		}
		stale <- v
	}()
	<-read
	if err := s.Apply(ctx, lists("race"), events); err != nil { // s-0 gets e4
		t.Fatal(err)
	}
	// A second reader reads after the batch and caches the fresh list,
	// replacing the tombstone; the slow one must not replace it in turn.
	if v := get(t, s, "race", "s-0"); !slices.Equal(v, ids(events, "s-0")) {
		t.Fatalf("a fresh reader got %v", v)
	}
	close(release)
	if v := <-stale; !slices.Equal(v, ids(events[:3], "s-0")) {
		t.Fatalf("the slow reader read %v", v)
	}
	if v := get(t, s, "race", "s-0"); !slices.Equal(v, ids(events, "s-0")) {
		t.Fatalf("after the batch, Get = %v, want %v: the slow reader cached stale data", v, ids(events, "s-0"))
	}
}

// proxiedRedis returns a Redis client through a proxy the test can take
// down.
func proxiedRedis(t *testing.T) (*goredis.Client, *testkit.TCPProxy) {
	t.Helper()
	proxy := testkit.NewTCPProxy(t, "127.0.0.1:6379")
	rdb := redistest.ClientOptions(t, func(o *goredis.Options) {
		o.Addr = proxy.Addr()
		o.MaxRetries = -1
		o.DialTimeout = time.Second
	})
	return rdb, proxy
}

// TestInvalidationsSurviveARedisOutage: a batch committed while Redis is
// down keeps its invalidations in PostgreSQL; the store's error says so
// (it is not the handler's), and the next batch sends them.
func TestInvalidationsSurviveARedisOutage(t *testing.T) {
	pool := pgtest.Pool(t)
	rdb, proxy := proxiedRedis(t)
	s := newStore(t, pool, rdb)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 9)
	p := lists("outage")
	if err := s.Apply(ctx, p, events[:3]); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, "outage", "s-0"); !slices.Equal(v, ids(events[:3], "s-0")) { // now cached
		t.Fatalf("Get = %v", v)
	}

	proxy.SetDown(true)
	err := s.Apply(ctx, p, events[:6])
	var ae *projection.ApplyError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Apply with Redis down = %v, want a store error", err)
	}
	if pos, _ := s.Postgres().Checkpoint(ctx, "outage"); pos != 6 {
		t.Fatalf("PostgreSQL checkpoint %d: the batch should have committed", pos)
	}
	// A reader waiting for position 6 must not read the stale cache entry
	// yet: the checkpoint stops short of the pending invalidations.
	if pos, err := s.Checkpoint(ctx, "outage"); err != nil || pos != 3 {
		t.Fatalf("Checkpoint with invalidations pending = %d, %v; want 3", pos, err)
	}
	// Reads fall back to PostgreSQL meanwhile.
	if v := get(t, s, "outage", "s-0"); !slices.Equal(v, ids(events[:6], "s-0")) {
		t.Fatalf("Get with Redis down = %v, want %v", v, ids(events[:6], "s-0"))
	}

	proxy.SetDown(false)
	// The runner retries the batch: nothing to apply, the invalidations go.
	if err := s.Apply(ctx, p, events[:6]); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, "outage", "s-0"); !slices.Equal(v, ids(events[:6], "s-0")) {
		t.Fatalf("after Redis came back, Get = %v, want %v", v, ids(events[:6], "s-0"))
	}
	if pos, err := s.Checkpoint(ctx, "outage"); err != nil || pos != 6 {
		t.Fatalf("Checkpoint after the invalidations went = %d, %v; want 6", pos, err)
	}
}

// TestPendingInvalidationsSettleAfterARestart: invalidations a process
// committed but could not send (Redis down, then the process stopped) are
// sent by the next process's first batch, even one that invalidates
// nothing.
func TestPendingInvalidationsSettleAfterARestart(t *testing.T) {
	pool, direct := pgtest.Pool(t), redistest.Client(t)
	rdb, proxy := proxiedRedis(t)
	schema := pgtest.Schema(t, pool, "cach")
	t.Cleanup(func() { pgtest.DropSchemas(t, pool, schema+"_") })
	prefix := redistest.Prefix(t, direct, "cache")
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	p := lists("restart")

	first := openStore(t, pool, rdb, schema, prefix)
	if err := first.Apply(ctx, p, events[:3]); err != nil {
		t.Fatal(err)
	}
	if v := get(t, first, "restart", "s-0"); !slices.Equal(v, ids(events[:3], "s-0")) { // now cached
		t.Fatalf("Get = %v", v)
	}
	proxy.SetDown(true)
	if err := first.Apply(ctx, p, events); err == nil {
		t.Fatal("Apply with Redis down succeeded")
	}

	second := openStore(t, pool, direct, schema, prefix) // the next process
	if err := second.Apply(ctx, p, events); err != nil { // nothing new: no invalidation queued
		t.Fatal(err)
	}
	if v := get(t, second, "restart", "s-0"); !slices.Equal(v, ids(events, "s-0")) {
		t.Fatalf("after the restart, Get = %v, want %v: the pending invalidation was never sent", v, ids(events, "s-0"))
	}
}

func TestInvalidInput(t *testing.T) {
	pool, rdb := pgtest.Pool(t), redistest.Client(t)
	ctx := ctxFor(t)
	if _, err := cached.New(ctx, pool, rdb, cached.Options{Prefix: "a{b"}); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("New(bad prefix) = %v, want ErrInvalid", err)
	}
	if _, err := cached.New(ctx, pool, rdb, cached.Options{TTL: time.Microsecond}); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("New(TTL 1µs) = %v, want ErrInvalid", err)
	}
	s := newStore(t, pool, rdb)
	if _, err := s.Get(ctx, "Bad", "k", nil); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("Get(bad name) = %v, want ErrInvalid", err)
	}
	if err := s.Flush(ctx, "a__rebuild"); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("Flush(generation) = %v, want ErrInvalid", err)
	}
}

// TestRebuildServesTheNewModel rebuilds with a changed handler: after the
// switch, reads give the new model, never the cached old one.
func TestRebuildServesTheNewModel(t *testing.T) {
	pool, rdb := pgtest.Pool(t), redistest.Client(t)
	s := newStore(t, pool, rdb)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	if err := s.Apply(ctx, lists("versioned"), events); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, "versioned", "s-0"); !slices.Equal(v, ids(events, "s-0")) { // cached
		t.Fatalf("Get = %v", v)
	}
	// A caller's key named like the store's own cache epoch is cached
	// apart from it: the switch-over below still bumps the epoch.
	if v := get(t, s, "versioned", "epoch"); len(v) != 0 {
		t.Fatalf("Get(epoch) = %v", v)
	}
	building, err := s.StartRebuild(ctx, "versioned")
	if err != nil {
		t.Fatal(err)
	}
	v2 := lists(building)
	v2.Handle = func(ctx context.Context, tx *cached.Tx, e persistence.RecordedEvent) error {
		return appendList(ctx, tx, e.StreamID, "v2-"+e.ID)
	}
	if err := s.Apply(ctx, v2, events); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, "versioned", "s-0"); !slices.Equal(v, ids(events, "s-0")) { // still the old model
		t.Fatalf("Get during the rebuild = %v", v)
	}
	if err := s.FinishRebuild(ctx, "versioned", building); err != nil {
		t.Fatal(err)
	}
	want := []string{"v2-e1", "v2-e4"}
	if v := get(t, s, "versioned", "s-0"); !slices.Equal(v, want) {
		t.Fatalf("Get after the rebuild = %v, want %v: the old model's cache entry was served", v, want)
	}
}

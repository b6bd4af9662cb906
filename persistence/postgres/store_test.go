package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/storetest"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store in a fresh schema, closed at cleanup.
func newStore(t *testing.T, pool *pgxpool.Pool, schema string, opts ...Option) *Store {
	t.Helper()
	s, err := New(ctxFor(t), pool, append([]Option{WithSchema(schema), WithLogger(quiet())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	pool := pgtest.Pool(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newStore(t, pool, pgtest.Schema(t, pool, "conformance"))
	})
}

func ev(id string) persistence.EventData {
	return persistence.EventData{ID: id, Type: "test", SchemaVersion: 1, Data: []byte(id)}
}

// waitForLockWaiter waits until a session waits for the append lock of
// schema (other tests on the server take advisory locks of their own).
func waitForLockWaiter(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	key := uint64(lockKey("append", schema))
	testkit.Eventually(t, 10*time.Second, func() bool {
		var n int
		err := pool.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1",
			uint32(key>>32), uint32(key)).Scan(&n)
		return err == nil && n > 0
	})
}

// TestFeedNeverSkipsAnEventCommittedLater holds one append transaction open
// just before COMMIT, with the lower position, while a second store (another
// process, in effect) appends to the same schema. A reader of the feed must
// not see the second event before the first commits, and must then see
// both, in order — with a writer that committed positions out of order, the
// reader would advance past the held event and never see it.
func TestFeedNeverSkipsAnEventCommittedLater(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "gap")
	held := newStore(t, pool, schema)
	other := newStore(t, pool, schema)
	ctx := ctxFor(t)

	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	held.beforeCommit = func() error {
		once.Do(func() { close(reached); <-release })
		return nil
	}
	first := make(chan error, 1)
	go func() { _, err := held.Append(ctx, "a", persistence.NoStream, ev("first")); first <- err }()
	<-reached // "first" is inserted at the lower position, not committed

	second := make(chan error, 1)
	go func() { _, err := other.Append(ctx, "b", persistence.NoStream, ev("second")); second <- err }()
	waitForLockWaiter(t, pool, schema) // "second" is queued behind "first"

	seen, err := other.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := int64(0)
	if len(seen) > 0 {
		checkpoint = seen[len(seen)-1].GlobalPosition
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	rest, err := other.ReadAll(ctx, checkpoint, 100)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, rest...)
	if len(seen) != 2 || seen[0].ID != "first" || seen[1].ID != "second" || seen[0].GlobalPosition >= seen[1].GlobalPosition {
		t.Fatalf("reader saw %v, want first then second", ids(seen))
	}
}

// TestRolledBackAppendDoesNotStallReaders aborts an append transaction after
// it inserted rows; later appends and readers carry on.
func TestRolledBackAppendDoesNotStallReaders(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "rollback")
	failing := newStore(t, pool, schema)
	other := newStore(t, pool, schema)
	ctx := ctxFor(t)
	boom := errors.New("injected failure before commit")
	failing.beforeCommit = func() error { return boom }

	if _, err := failing.Append(ctx, "a", persistence.NoStream, ev("doomed")); !errors.Is(err, boom) {
		t.Fatalf("append err = %v, want the injected failure", err)
	}
	if _, err := other.Append(ctx, "b", persistence.NoStream, ev("after")); err != nil {
		t.Fatal(err)
	}
	got, err := other.ReadAll(ctx, 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != "after" {
		t.Fatalf("feed = %v, %v; want only the committed event", ids(got), err)
	}
	if _, err := other.Load(ctx, "a", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("rolled-back stream: %v", err)
	}
}

// TestConflictFailsOnlyItsOwnAppend puts conflicting and valid appends in
// one group-commit batch.
func TestConflictFailsOnlyItsOwnAppend(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "batch"))
	ctx := ctxFor(t)
	if _, err := s.Append(ctx, "taken", persistence.NoStream, ev("t1")); err != nil {
		t.Fatal(err)
	}
	// Hold the writer so the next appends queue up and share a batch.
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.beforeCommit = func() error {
		once.Do(func() { close(reached); <-release })
		return nil
	}
	go func() { _, _ = s.Append(ctx, "warmup", persistence.NoStream, ev("w")) }()
	<-reached
	type outcome struct {
		name string
		err  error
	}
	results := make(chan outcome, 4)
	appendAsync := func(name, stream string, expected persistence.ExpectedVersion, e persistence.EventData) {
		go func() {
			_, err := s.Append(ctx, stream, expected, e)
			results <- outcome{name, err}
		}()
	}
	appendAsync("ok1", "fresh-1", persistence.NoStream, ev("f1"))
	appendAsync("conflict", "taken", persistence.NoStream, ev("t2"))
	appendAsync("duplicate", "fresh-2", persistence.NoStream, ev("t1"))
	appendAsync("ok2", "fresh-3", persistence.NoStream, ev("f3"))
	testkit.Eventually(t, 10*time.Second, func() bool { return len(s.requests) == 4 })
	close(release)
	got := map[string]error{}
	for range 4 {
		o := <-results
		got[o.name] = o.err
	}
	if got["ok1"] != nil || got["ok2"] != nil {
		t.Fatalf("valid appends failed with their batch-mates: %v", got)
	}
	if !errors.Is(got["conflict"], persistence.ErrConcurrency) || !errors.Is(got["duplicate"], persistence.ErrDuplicateEvent) {
		t.Fatalf("conflict: %v, duplicate: %v", got["conflict"], got["duplicate"])
	}
}

func TestPoolSurvivesDroppedConnections(t *testing.T) {
	direct := pgtest.Pool(t)
	schema := pgtest.Schema(t, direct, "drop")
	pool, proxy := pgtest.ProxiedPool(t, func(c *pgxpool.Config) { c.MaxConns = 4 })
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	written := 0
	appendOK := func(i int) error {
		_, err := s.Append(ctx, fmt.Sprintf("s-%d", i), persistence.NoStream, ev(fmt.Sprintf("e-%d", i)))
		if err == nil {
			written++
		}
		return err
	}
	for i := range 3 {
		if err := appendOK(i); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		proxy.CutAll()
		// The writer retries a batch that failed before COMMIT on a new
		// connection, so the append after a cut succeeds.
		if err := appendOK(100 + round); err != nil {
			t.Fatalf("append after cut %d: %v", round, err)
		}
		// Reads may hit a dead pooled connection once; the pool then
		// replaces it.
		var err error
		for range 5 {
			if _, err = s.ReadAll(ctx, 0, 100); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("read after cut %d: %v", round, err)
		}
	}
	all, err := s.ReadAll(ctx, 0, 100)
	if err != nil || len(all) != written {
		t.Fatalf("feed has %d events (%v), want the %d acknowledged", len(all), err, written)
	}
}

func TestConcurrentStartupMigratesOnce(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := "migrate_" + pgtest.Schema(t, pool, "m") // a schema that does not exist yet
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := New(ctxFor(t), pool, WithSchema(schema), WithLogger(quiet()))
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent New: %v", err)
		}
	}
	all, _ := migrations.List(schema)
	var n int
	if err := pool.QueryRow(ctxFor(t), `SELECT count(*) FROM "`+schema+`".schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("%d migrations recorded (%v), want %d", n, err, len(all))
	}
}

func TestCloseCommitsQueuedAppendsThenRefuses(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "close"))
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(ctx, fmt.Sprintf("c-%d", i), persistence.NoStream, ev(fmt.Sprintf("c-%d", i)))
			switch {
			case err == nil:
				mu.Lock()
				acked++
				mu.Unlock()
			case errors.Is(err, ErrClosed):
			default:
				t.Errorf("append during close: %v", err)
			}
		}()
	}
	_ = s.Close()
	wg.Wait()
	if _, err := s.Append(ctx, "late", persistence.NoStream, ev("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Every acknowledged append is stored; nothing else is.
	all, err := s.ReadAll(ctx, 0, 100)
	if err != nil || len(all) != acked {
		t.Fatalf("stored %d, acknowledged %d (%v)", len(all), acked, err)
	}
}

func TestNotifyWakesOtherProcesses(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "notify")
	listener := newStore(t, pool, schema)
	writer := newStore(t, pgtest.Pool(t), schema)
	ch := listener.Appended()
	// The listener connects asynchronously; keep appending until it wakes.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		if _, err := writer.Append(ctxFor(t), "n", persistence.Any, ev(fmt.Sprintf("n-%d", i))); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			return
		case <-deadline:
			t.Fatal("no wake-up from another store's NOTIFY")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestOptionsAreValidated(t *testing.T) {
	pool := pgtest.Pool(t)
	_, err := New(ctxFor(t), pool, WithSchema(strings.Repeat("s", 64)), WithMaxEventSize(0), WithMaxBatchEvents(-1), WithLogger(nil))
	if !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"at most 63 bytes", "max event size", "max batch events", "nil logger"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func ids(es []persistence.RecordedEvent) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// TestAnotherWriterInvalidatesTheVersionCache has a second store append to a
// stream the first store has cached: the first store must neither accept a
// stale expected version nor refuse the true one.
func TestAnotherWriterInvalidatesTheVersionCache(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "stale")
	a, b := newStore(t, pool, schema), newStore(t, pool, schema)
	ctx := ctxFor(t)
	if _, err := a.Append(ctx, "s", persistence.NoStream, ev("a1")); err != nil { // a caches version 1
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "s", 1, ev("b2"), ev("b3")); err != nil { // now at 3
		t.Fatal(err)
	}
	_, err := a.Append(ctx, "s", 1, ev("a-stale"))
	var cerr *persistence.ConcurrencyError
	if !errors.As(err, &cerr) || cerr.Actual != 3 {
		t.Fatalf("append at the stale version: %v, want a conflict with actual 3", err)
	}
	if res, err := a.Append(ctx, "s", 3, ev("a4")); err != nil || res.Version != 4 {
		t.Fatalf("append at the true version: %+v, %v", res, err)
	}
	if _, err := b.Append(ctx, "s", 4, ev("b5")); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Append(ctx, "s", persistence.Any, ev("a6")); err != nil || res.Version != 6 {
		t.Fatalf("append with Any after another writer: %+v, %v", res, err)
	}
	got, err := a.Load(ctx, "s", 1)
	if err != nil || len(got) != 6 {
		t.Fatalf("stream has %d events (%v), want 6", len(got), err)
	}
	for i, e := range got {
		if e.Version != int64(i+1) {
			t.Fatalf("versions %v", ids(got))
		}
	}
	// A retried append (same ids, same expected version) reports the
	// duplicate, not a conflict, even when the cache says the version moved.
	if _, err := a.Append(ctx, "s", 5, ev("a6")); !errors.Is(err, persistence.ErrDuplicateEvent) {
		t.Fatalf("retried append: %v, want ErrDuplicateEvent", err)
	}
}

// TestOpen: a store that owns its pool, and Open's failures.
func TestOpen(t *testing.T) {
	pool := pgtest.Pool(t) // fails with instructions when the server is down
	schema := pgtest.Schema(t, pool, "open")
	ctx := ctxFor(t)
	s, err := Open(ctx, pgtest.URL(), WithSchema(schema), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "s", persistence.NoStream, ev("opened")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.Ping(ctx); err == nil {
		t.Fatal("Close left the store's own pool open")
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	if _, err := Open(ctx, "postgres://%zz"); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("Open(bad URL) = %v, want ErrInvalidInput", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	if _, err := Open(ctx, "postgres://postgres@"+addr+"/test?connect_timeout=5"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Open(nothing listening) = %v, want ErrUnreachable", err)
	}
}

// TestSmallPoolServesReadersUnderSteadyAppends: with two connections — one
// held by the NOTIFY listener, one the writer's — reads still get through
// while 64 goroutines append without pause. (The writer's queue runs dry
// often enough here that reads would get through even if it never gave its
// connection back; TestWriterKeepsItsConnectionOnlyWhenThePoolHasOthers
// tests that rule.)
func TestSmallPoolServesReadersUnderSteadyAppends(t *testing.T) {
	pool := pgtest.PoolConfig(t, func(c *pgxpool.Config) { c.MaxConns = 2 })
	s := newStore(t, pool, pgtest.Schema(t, pool, "small_pool"))
	ctx := ctxFor(t)
	_ = s.Appended() // starts the listener, which keeps one connection
	if _, err := s.Append(ctx, "r", persistence.NoStream, ev("r-1")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 64 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Append(ctx, fmt.Sprintf("w-%d", w), persistence.Any, ev(fmt.Sprintf("w-%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		writers.Wait()
	}()
	for range 20 {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, err := s.Load(rctx, "r", 1)
		cancel()
		if err != nil || len(got) != 1 {
			t.Fatalf("read under steady appends: %d events, %v", len(got), err)
		}
	}
}

// TestWriterKeepsItsConnectionOnlyWhenThePoolHasOthers checks settle
// directly: an idle connection is kept for the next batch while the pool
// can serve others without waiting, and given back when it cannot.
func TestWriterKeepsItsConnectionOnlyWhenThePoolHasOthers(t *testing.T) {
	ctx := ctxFor(t)
	for _, tt := range []struct {
		maxConns int32
		kept     bool
	}{{1, false}, {3, true}} {
		pool := pgtest.PoolConfig(t, func(c *pgxpool.Config) { c.MaxConns = tt.maxConns })
		s := newStore(t, pool, pgtest.Schema(t, pool, "settle"))
		w := &writer{store: s, versions: map[string]int64{}}
		if _, err := w.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		w.settle()
		if kept := w.conn != nil; kept != tt.kept {
			t.Errorf("MaxConns %d: kept %v, want %v", tt.maxConns, kept, tt.kept)
		}
		w.releaseConn()
	}
}

// TestOpenRefusesWhatItCannotUseSafely: an empty URL is refused (pgx
// would connect with the libpq defaults); a URL that does not parse is
// refused without quoting it, whatever the password's spelling; and a
// server that accepts connections but never answers is given up on after
// the connect timeout, even with a context that never ends.
func TestOpenRefusesWhatItCannotUseSafely(t *testing.T) {
	for _, url := range []string{"", "  "} {
		if _, err := Open(context.Background(), url); !errors.Is(err, persistence.ErrInvalidInput) {
			t.Fatalf("Open(%q) = %v, want ErrInvalidInput", url, err)
		}
	}
	const secret = "s3cret-Pa55"
	for _, url := range []string{
		"host=127.0.0.1 password = " + secret + " port=notaport",
		"host=127.0.0.1 password=" + secret + " port=notaport",
		"host=127.0.0.1 password='" + secret + " x' port=notaport",
		"host=127.0.0.1 password= '" + secret + "' port=notaport",
		"postgres://u:" + secret + "@127.0.0.1:notaport/db",
		"postgres://u:" + secret + "@127.0.0.1/db?port=x&password=" + secret,
		"postgresql://u:" + secret + "@[::1/db",
		"user=u password=" + secret + "\x00",
	} {
		_, err := Open(context.Background(), url)
		if !errors.Is(err, persistence.ErrInvalidInput) {
			t.Fatalf("Open of a bad URL = %v, want ErrInvalidInput", err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
			t.Fatalf("the error shows the password: %v", err)
		}
	}

	// A server that accepts and then says nothing.
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c
		}
	}()
	defer func() {
		_ = ln.Close()
		for c := range held {
			_ = c.Close()
		}
	}()
	_, err = Open(context.Background(), "postgres://postgres@"+ln.Addr().String()+"/test?sslmode=disable", WithConnectTimeout(200*time.Millisecond))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Open(a silent server) = %v, want ErrUnreachable", err)
	}
}

func FuzzAppendLoad(f *testing.F) {
	pool := pgtest.Pool(f)
	s, err := New(context.Background(), pool, WithSchema(pgtest.Schema(f, pool, "fuzz")), WithLogger(quiet()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	storetest.Fuzz(f, s)
}

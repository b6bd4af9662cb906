package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestStrictDefaultIsolationDoesNotStaleDecisions: with the database's
// default at SERIALIZABLE, an append that waited for the lock must still see
// what committed meanwhile.
func TestStrictDefaultIsolationDoesNotStaleDecisions(t *testing.T) {
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			pool := pgtest.PoolConfig(t, func(c *pgxpool.Config) {
				c.ConnConfig.RuntimeParams["default_transaction_isolation"] = level
			})
			schema := pgtest.Schema(t, pool, "iso")
			first, second := newStore(t, pool, schema), newStore(t, pool, schema)
			ctx := ctxFor(t)
			reached, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			first.beforeCommit = func() error {
				once.Do(func() { close(reached); <-release })
				return nil
			}
			done := make(chan error, 1)
			go func() { _, err := first.Append(ctx, "s", persistence.NoStream, ev("v1")); done <- err }()
			<-reached
			res := make(chan error, 1)
			go func() { _, err := second.Append(ctx, "s", 1, ev("v2")); res <- err }()
			waitForLockWaiter(t, pool, schema)
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := <-res; err != nil {
				t.Fatalf("append at the version committed while it waited: %v", err)
			}
		})
	}
}

// TestDroppedConnectionOnTheFastPath cuts connections while the writer has
// the stream cached, so its appends take the one-round-trip path.
func TestDroppedConnectionOnTheFastPath(t *testing.T) {
	direct := pgtest.Pool(t)
	schema := pgtest.Schema(t, direct, "fastcut")
	pool, proxy := pgtest.ProxiedPool(t, nil)
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	version := persistence.ExpectedVersion(0)
	for i := range 3 {
		if _, err := s.Append(ctx, "hot", version, ev(fmt.Sprint("warm-", i))); err != nil {
			t.Fatal(err)
		}
		version++
	}
	for i := range 5 {
		proxy.CutAll()
		res, err := s.Append(ctx, "hot", version, ev(fmt.Sprint("after-cut-", i)))
		if err != nil {
			t.Fatalf("append %d after a cut: %v", i, err)
		}
		version++
		if res.Version != int64(version) {
			t.Fatalf("version %d, want %d", res.Version, version)
		}
	}
	events, err := s.Load(ctx, "hot", 1)
	if err != nil || len(events) != int(version) {
		t.Fatalf("%d events (%v), want %d", len(events), err, version)
	}
}

// TestFailureAfterCommitIsNotAFailure makes the NOTIFY that follows COMMIT
// fail: the append committed and must be reported as such, once.
func TestFailureAfterCommitIsNotAFailure(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "postcommit"))
	s.q.channel = strings.Repeat("x", 100) // pg_notify refuses names over 63 bytes
	res, err := s.Append(ctxFor(t), "s", persistence.NoStream, ev("only-once"))
	if err != nil || res.Version != 1 {
		t.Fatalf("append: %+v, %v", res, err)
	}
	if got, _ := s.Load(ctxFor(t), "s", 1); len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
}

// TestResolveAnswersFromWhatLanded drives the resolution of an unknown
// COMMIT outcome both ways.
func TestResolveAnswersFromWhatLanded(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "resolve"))
	ctx := ctxFor(t)
	landed, err := s.Append(ctx, "s", persistence.NoStream, ev("a"), ev("b"))
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{store: s, versions: map[string]int64{}}
	defer w.releaseConn()
	req := func(stream string, expected persistence.ExpectedVersion, ids ...string) *request {
		var events []persistence.EventData
		for _, id := range ids {
			events = append(events, ev(id))
		}
		r := newRequest(ctx, stream, expected, events, nil)
		r.done = make(chan result, 1)
		return r
	}
	// The batch did commit: its decisions stand, with stored positions.
	r := req("s", persistence.NoStream, "a", "b")
	ds, err := w.resolve([]*request{r}, []decision{{r: r}})
	if err != nil || len(ds) != 1 || ds[0].err != nil || ds[0].res != landed {
		t.Fatalf("committed batch: %+v, %v; want %+v", ds, err, landed)
	}
	// The batch did not commit: it is attempted again.
	r2 := req("s", 2, "c")
	ds, err = w.resolve([]*request{r2}, []decision{{r: r2}})
	if err != nil || len(ds) != 1 || ds[0].err != nil || ds[0].res.Version != 3 {
		t.Fatalf("lost batch: %+v, %v", ds, err)
	}
	if got, _ := s.Load(ctx, "s", 1); len(got) != 3 {
		t.Fatalf("%d events, want 3", len(got))
	}
}

// TestCallersThatGaveUpDoNotHoldTheWriter: while another session holds the
// append lock, appends time out; their callers leave, and Close does not
// wait for them request by request.
func TestCallersThatGaveUpDoNotHoldTheWriter(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "giveup")
	s, err := New(ctxFor(t), pool, WithSchema(schema), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.batchTimeout = 500 * time.Millisecond
	tx, err := pool.Begin(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctxFor(t), "SELECT pg_advisory_xact_lock($1)", lockKey("append", schema)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := s.Append(ctx, fmt.Sprint("s-", i), persistence.NoStream, ev(fmt.Sprint("e-", i)))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("append: %v, want DeadlineExceeded", err)
			}
		}()
	}
	wg.Wait()
	_ = s.Close() // returns although the lock is still held
	_ = tx.Rollback(context.Background())
	// The writer timed out on the batch in flight and then dropped the
	// abandoned appends, instead of trying each again on its own.
	if n := s.attempts.Load(); n > 2 {
		t.Fatalf("%d append transactions tried for six abandoned appends", n)
	}
}

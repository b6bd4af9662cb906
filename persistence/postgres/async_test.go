package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

type asyncOutcome struct {
	res persistence.AppendResult
	err error
}

// appendAsync queues an append and returns where its single outcome
// arrives; a second call of done fails the test.
func appendAsync(t *testing.T, s *Store, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (chan asyncOutcome, error) {
	t.Helper()
	out := make(chan asyncOutcome, 2)
	err := s.AppendAsync(ctxFor(t), stream, expected, events, func(res persistence.AppendResult, err error) {
		out <- asyncOutcome{res, err}
	})
	return out, err
}

func outcome(t *testing.T, c chan asyncOutcome) asyncOutcome {
	t.Helper()
	select {
	case o := <-c:
		select {
		case again := <-c:
			t.Fatalf("done called twice: %+v, then %+v", o, again)
		case <-time.After(10 * time.Millisecond):
		}
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("done never called")
		return asyncOutcome{}
	}
}

// TestAppendAsync: AppendAsync decides like Append, answering through the
// callback exactly once; what it refuses up front it returns, and then
// never calls back.
func TestAppendAsync(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "append_async"))
	ctx := ctxFor(t)

	ok, err := appendAsync(t, s, "s1", persistence.NoStream, ev("a"), ev("b"))
	if err != nil {
		t.Fatal(err)
	}
	conflict, err := appendAsync(t, s, "s1", persistence.NoStream, ev("c")) // same batch or the next: either way it conflicts
	if err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, ok); o.err != nil || o.res.Version != 2 {
		t.Fatalf("append: %+v", o)
	}
	if o := outcome(t, conflict); !errors.Is(o.err, persistence.ErrConcurrency) {
		t.Fatalf("conflicting append: %+v, want ErrConcurrency", o)
	}
	stored, err := s.Load(ctx, "s1", 1)
	if err != nil || len(stored) != 2 || stored[1].ID != "b" {
		t.Fatalf("stored: %v, %v", ids(stored), err)
	}

	mustNotCall := func(persistence.AppendResult, error) { t.Error("done called for a refused append") }
	if err := s.AppendAsync(ctx, "", persistence.Any, []persistence.EventData{ev("d")}, mustNotCall); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("invalid stream: %v, want ErrInvalidInput", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.AppendAsync(cancelled, "s1", persistence.Any, []persistence.EventData{ev("e")}, mustNotCall); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAsync(ctx, "s1", persistence.Any, []persistence.EventData{ev("f")}, mustNotCall); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed store: %v, want ErrClosed", err)
	}
}

// TestSnapshotBatchKeepsEachStreamsNewest: one batch may hold several
// snapshots of a stream, which one upsert cannot write; the newest wins,
// in whatever order they came.
func TestSnapshotBatchKeepsEachStreamsNewest(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "snapshot_batch"))
	snap := func(stream string, v int64) *snapshotRequest {
		return &snapshotRequest{ctx: context.Background(), snap: persistence.Snapshot{StreamID: stream, Version: v, Data: []byte{byte(v)}}}
	}
	if err := s.saveSnapshots([]*snapshotRequest{snap("a", 3), snap("b", 9), snap("a", 5), snap("b", 2), snap("a", 4)}); err != nil {
		t.Fatal(err)
	}
	for stream, want := range map[string]int64{"a": 5, "b": 9} {
		got, ok, err := s.LoadSnapshot(ctxFor(t), stream)
		if err != nil || !ok || got.Version != want || got.Data[0] != byte(want) {
			t.Fatalf("%s: %+v, %v, %v; want version %d", stream, got, ok, err, want)
		}
	}
}

// TestGivenUpRequestIsAnsweredOnce: a batch fails with a statement error
// and is committed request by request; a request whose caller gave up
// meanwhile is answered when it is dropped, and not again by the batch's
// last check. (A second answer to a caller that returned would block the
// writer, and every append after it, for good.)
func TestGivenUpRequestIsAnsweredOnce(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "answer_once"))
	ctx := ctxFor(t)
	aCtx, cancelA := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	s.beforeCommit = func() error {
		switch calls.Add(1) {
		case 1: // the first batch holds the writer while a and b queue
			<-release
		case 2: // a and b's batch: a's caller gives up, then a statement fails
			cancelA()
			if err := <-aDone; !errors.Is(err, context.Canceled) {
				t.Errorf("a: %v, want its own cancellation", err)
			}
			return &pgconn.PgError{Code: "XX000", Message: "injected"}
		}
		return nil
	}
	blocker := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "blocker", persistence.NoStream, ev("b0")); blocker <- err }()
	for calls.Load() < 1 {
		runtime.Gosched()
	}
	go func() { _, err := s.Append(aCtx, "a", persistence.NoStream, ev("a1")); aDone <- err }()
	bDone := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "b", persistence.NoStream, ev("b1")); bDone <- err }()
	for len(s.requests) < 2 { // both queued behind the first batch
		runtime.Gosched()
	}
	close(release)
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("b: %v", err)
	}
	next := make(chan error, 1)
	go func() { _, err := s.Append(ctx, "c", persistence.NoStream, ev("c1")); next <- err }()
	select {
	case err := <-next:
		if err != nil {
			t.Fatalf("next append: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writer is stuck: the next append is never answered")
	}
}

// TestTwoUnknownCommitsInARow: the connection breaks before COMMIT
// completes, twice in a row; each time the writer looks for the batch's
// events, finds none and tries again, and the append then lands once —
// with the timer it arms, which shares its transaction.
func TestTwoUnknownCommitsInARow(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "two_unknown")
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	key := uint64(lockKey("append", schema))
	var calls atomic.Int32
	s.beforeCommit = func() error {
		if calls.Add(1) > 2 {
			return nil
		}
		// Kill the writer's session, which holds the append lock, and wait
		// until it is gone: COMMIT then meets a dead connection.
		var pid int
		if err := pool.QueryRow(context.Background(), `SELECT pid FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1`,
			uint32(key>>32), uint32(key)).Scan(&pid); err != nil {
			t.Errorf("find the writer's session: %v", err)
			return nil
		}
		if _, err := pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Errorf("terminate: %v", err)
		}
		testkit.Eventually(t, 10*time.Second, func() bool {
			var n int
			err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
			return err == nil && n == 0
		})
		return nil
	}
	due := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := s.AppendWithTimers(ctx, "s", persistence.NoStream, []persistence.EventData{ev("e1")},
		[]persistence.TimerChange{{Timer: persistence.Timer{Owner: "o", ID: "s", Name: "t", Due: due, FireID: "f"}}})
	if err != nil || res.Version != 1 {
		t.Fatalf("append after two broken commits: %+v, %v (after %d tries)", res, err, calls.Load())
	}
	if stored, err := s.Load(ctx, "s", 1); err != nil || len(stored) != 1 {
		t.Fatalf("stored %d events (%v), want 1", len(stored), err)
	}
	if timers, err := s.Timers(ctx, "o", persistence.Timer{}, 10); err != nil || len(timers) != 1 || !timers[0].Due.Equal(due) {
		t.Fatalf("timers %+v (%v), want the one armed", timers, err)
	}
}

// TestBatchOfEmptyEventsIsStored: a batch whose events all have empty
// data sends an empty bytea, not NULL (which the data column refuses).
func TestBatchOfEmptyEventsIsStored(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "empty_batch"))
	ctx := ctxFor(t)
	events := []persistence.EventData{{ID: "e1", Type: "t"}, {ID: "e2", Type: "t", Data: []byte{}}}
	if _, err := s.Append(ctx, "s", persistence.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Load(ctx, "s", 1)
	if err != nil || len(stored) != 2 || len(stored[0].Data) != 0 || len(stored[1].Data) != 0 {
		t.Fatalf("stored %+v, %v", stored, err)
	}
}

// TestVanishedPreparedStatementsReplaceTheConnection: when the server
// forgets the writer's prepared statements behind pgx's back (DISCARD ALL
// by a pool hook or a pooler), the batch is refused with nothing written
// and the connection is closed, so the next append gets a fresh one.
func TestVanishedPreparedStatementsReplaceTheConnection(t *testing.T) {
	pool := pgtest.PoolConfig(t, func(c *pgxpool.Config) {
		c.MaxConns = 1 // the writer gets the same connection back, statements discarded
		c.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
			_, err := conn.PgConn().Exec(ctx, "DEALLOCATE ALL").ReadAll()
			return err == nil, err
		}
	})
	s := newStore(t, pool, pgtest.Schema(t, pool, "vanished"))
	ctx := ctxFor(t)
	var refused, landed int
	lastRefused := false
	for i := range 6 {
		_, err := s.Append(ctx, "s", persistence.Any, ev(fmt.Sprint("e", i)))
		switch {
		case err == nil:
			landed++
			lastRefused = false
		case errors.Is(err, ErrCommitUnknown):
			t.Fatalf("append %d: %v: the outcome is known, nothing ran", i, err)
		default:
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "26000" {
				t.Fatalf("append %d: %v, want the vanished statement's error", i, err)
			}
			if lastRefused {
				t.Fatalf("append %d refused again: the stale connection was kept", i)
			}
			refused++
			lastRefused = true
		}
	}
	if refused == 0 || landed == 0 {
		t.Fatalf("%d refused, %d landed: want both (a stale connection, then a fresh one)", refused, landed)
	}
	if stored, err := s.Load(ctx, "s", 1); err != nil || len(stored) != landed {
		t.Fatalf("stored %d events (%v), want the %d that landed", len(stored), err, landed)
	}
}

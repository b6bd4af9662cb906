package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
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
		return &snapshotRequest{snap: persistence.Snapshot{StreamID: stream, Version: v, Data: []byte{byte(v)}}}
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

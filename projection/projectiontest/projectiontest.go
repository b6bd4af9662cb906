// Package projectiontest is the conformance suite every projection store
// passes. A store's test calls [Run] with a factory that adapts a fresh
// store to the suite:
//
//	func TestConformance(t *testing.T) {
//		projectiontest.Run(t, func(t *testing.T) projectiontest.Harness[*memory.Tx] {
//			s := memory.New()
//			return projectiontest.Harness[*memory.Tx]{Store: s, Append: ..., Read: ...}
//		})
//	}
//
// The suite's read model is a set of lists, one per stream, of the ids of
// the events applied to it, so a lost or doubled event shows. It covers
// batches applied with their checkpoint, handler failures applying nothing,
// replayed and overlapping batches skipped by position, checkpoints that
// only move forward, setup once per generation, dead letters, isolated
// projections, and — through a [projection.Runner] — a failure at event k
// leaving exactly the events before k, retries, skips, stops and reruns,
// rebuilds that give an identical model without queries ever seeing a
// half-built one, read-your-writes, pause and resume, and lease takeover;
// batches stopped or cut off from the server mid-way, which apply nothing
// and are never blamed on an event;
// and, for stores that implement [projection.StreamApplier], projections
// fed from the bus: out-of-global-order and duplicate deliveries applied
// once per stream version, concurrently across streams.
package projectiontest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/bus"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection"
)

// Harness adapts a store to the suite.
type Harness[Tx any] struct {
	// Store is the store under test, fresh and empty.
	Store projection.Store[Tx]
	// Setup creates the suite's read model in a new generation (a table,
	// say). Optional.
	Setup func(ctx context.Context, tx Tx) error
	// Append appends value to the list under key, through tx.
	Append func(ctx context.Context, tx Tx, key, value string) error
	// Read returns the list under key in the current generation of the
	// projection name, nil if there is none.
	Read func(ctx context.Context, name, key string) ([]string, error)
	// Cut, if set, drops every connection between the store and its server
	// (a loopback proxy cutting them, say), as a network failure would. The
	// suite then checks that a batch cut mid-way applies nothing, is not
	// blamed on an event, and applies exactly once when rerun.
	Cut func()
}

// Run runs the suite; newHarness is called once per subtest.
func Run[Tx any](t *testing.T, newHarness func(t *testing.T) Harness[Tx]) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, *suite[Tx])
	}{
		{"AppliesBatchesWithTheirCheckpoint", testApply[Tx]},
		{"HandlerFailureAppliesNothing", testHandlerFailure[Tx]},
		{"ReplayedBatchesAreSkippedByPosition", testReplay[Tx]},
		{"ConcurrentOverlappingBatchesApplyOnce", testConcurrentApply[Tx]},
		{"CheckpointsOnlyMoveForward", testForward[Tx]},
		{"SetupOncePerGeneration", testSetup[Tx]},
		{"DeadLetters", testDeadLetters[Tx]},
		{"ProjectionsAreIsolated", testIsolation[Tx]},
		{"RunnerStopsAtTheFailingEventAndRerunFinishes", testRunnerStop[Tx]},
		{"RunnerSkipsAndDeadLetters", testRunnerSkip[Tx]},
		{"RunnerRetriesUntilTheHandlerSucceeds", testRunnerRetry[Tx]},
		{"RebuildGivesAnIdenticalModelNeverHalfBuilt", testRebuild[Tx]},
		{"WaitForReadsYourWrites", testWaitFor[Tx]},
		{"PauseAndResume", testPause[Tx]},
		{"OneActiveRunnerAndTakeover", testTakeover[Tx]},
		{"StoppedMidBatchAppliesNothing", testStoppedMidBatch[Tx]},
		{"ConnectionLostMidBatchAppliesNothing", testCutMidBatch[Tx]},
		{"ConnectionLostIsNeverDeadLettered", testCutNeverDeadLetters[Tx]},
		{"BusFedAppliesEachStreamVersionOnce", testStreamDedup[Tx]},
		{"BusFedHandlerFailureAppliesNothing", testStreamFailure[Tx]},
		{"BusFedGapsAreRefused", testStreamGap[Tx]},
		{"BusFedFailurePolicies", testBusPolicies[Tx]},
		{"BusFedSkipMarkers", testBusSkipMarkers[Tx]},
		{"BusFedStreamsApplyConcurrently", testStreamConcurrency[Tx]},
		{"BusFedThroughTheBus", testBusFed[Tx]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			t.Cleanup(cancel)
			tt.fn(t, &suite[Tx]{h: h, ctx: ctx, feed: evmemory.New(), leases: evmemory.NewLeases()})
		})
	}
}

// suite is one subtest's fixture: the harness, an event feed and leases.
type suite[Tx any] struct {
	h      Harness[Tx]
	ctx    context.Context
	feed   *evmemory.Store
	leases *evmemory.Leases
}

// streams are the streams seed writes to, round robin.
var streams = []string{"order-1", "order-2", "order-3"}

// seed appends n events to the feed and returns them as recorded.
func (s *suite[Tx]) seed(t *testing.T, n int) []persistence.RecordedEvent {
	t.Helper()
	for range n {
		before, _ := s.feed.Head(s.ctx)
		stream := streams[int(before)%len(streams)]
		_, err := s.feed.Append(s.ctx, stream, persistence.Any, persistence.EventData{
			ID: fmt.Sprintf("e%d", before+1), Type: "test.happened", SchemaVersion: 1, Data: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return s.all(t)
}

// all returns every event of the feed.
func (s *suite[Tx]) all(t *testing.T) []persistence.RecordedEvent {
	t.Helper()
	events, err := s.feed.ReadAll(s.ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// projection returns the suite's projection: each event's id appended to
// its stream's list. fail, if set, may fail an event.
func (s *suite[Tx]) projection(name string, fail func(persistence.RecordedEvent) error) projection.Projection[Tx] {
	return projection.Projection[Tx]{
		Name: name,
		Setup: func(ctx context.Context, tx Tx) error {
			if s.h.Setup != nil {
				if err := s.h.Setup(ctx, tx); err != nil {
					return err
				}
			}
			return s.h.Append(ctx, tx, "setup", "ran")
		},
		Handle: func(ctx context.Context, tx Tx, e persistence.RecordedEvent) error {
			if fail != nil {
				if err := fail(e); err != nil {
					return err
				}
			}
			return s.h.Append(ctx, tx, e.StreamID, e.ID)
		},
	}
}

// want is the model after events: each stream's event ids, in order.
func want(events []persistence.RecordedEvent) map[string][]string {
	m := map[string][]string{}
	for _, e := range events {
		m[e.StreamID] = append(m[e.StreamID], e.ID)
	}
	return m
}

// check asserts the model of name holds exactly events, and the checkpoint
// is checkpoint.
func (s *suite[Tx]) check(t *testing.T, name string, events []persistence.RecordedEvent, checkpoint int64) {
	t.Helper()
	w := want(events)
	for _, stream := range streams {
		got, err := s.h.Read(s.ctx, name, stream)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, w[stream]) {
			t.Fatalf("%s: stream %s holds %v, want %v", name, stream, got, w[stream])
		}
	}
	if pos := s.checkpoint(t, name); pos != checkpoint {
		t.Fatalf("%s: checkpoint %d, want %d", name, pos, checkpoint)
	}
}

func (s *suite[Tx]) checkpoint(t *testing.T, name string) int64 {
	t.Helper()
	pos, err := s.h.Store.Checkpoint(s.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func (s *suite[Tx]) apply(t *testing.T, p projection.Projection[Tx], events []persistence.RecordedEvent) {
	t.Helper()
	if err := s.h.Store.Apply(s.ctx, p, events); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runner starts a runner of p; stop stops it and returns Run's error.
func (s *suite[Tx]) runner(t *testing.T, p projection.Projection[Tx], opts projection.Options) (*projection.Runner[Tx], func() error) {
	t.Helper()
	if opts.Lease == nil {
		opts.Lease = s.leases
	}
	opts.Logger = quiet()
	opts.PollInterval = 5 * time.Millisecond
	opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 5*time.Millisecond
	if opts.BatchSize == 0 {
		opts.BatchSize = 7
	}
	r, err := projection.NewRunner(s.feed, s.h.Store, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	var result error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// waitFor waits until the runner has applied position.
func (s *suite[Tx]) waitFor(t *testing.T, r *projection.Runner[Tx], position int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, position); err != nil {
		t.Fatal(err)
	}
}

func testApply[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 10)
	p := s.projection("apply", nil)
	s.check(t, "apply", nil, 0) // nothing yet: empty lists, checkpoint 0
	s.apply(t, p, events[:4])
	s.check(t, "apply", events[:4], 4)
	s.apply(t, p, events[4:])
	s.check(t, "apply", events, 10)
	s.apply(t, p, nil) // an empty batch changes nothing
	s.check(t, "apply", events, 10)
}

func testHandlerFailure[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 10)
	s.apply(t, s.projection("fail", nil), events[:3])
	boom := errors.New("boom")
	p := s.projection("fail", func(e persistence.RecordedEvent) error {
		if e.GlobalPosition == 7 {
			return boom
		}
		return nil
	})
	err := s.h.Store.Apply(s.ctx, p, events[3:])
	var ae *projection.ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, projection.ErrHandler) || !errors.Is(err, boom) {
		t.Fatalf("Apply = %v, want an *ApplyError matching ErrHandler and the handler's error", err)
	}
	if ae.Index != 3 || ae.Event.ID != events[6].ID {
		t.Fatalf("ApplyError names index %d (%s), want 3 (%s)", ae.Index, ae.Event.ID, events[6].ID)
	}
	s.check(t, "fail", events[:3], 3) // nothing of the failed batch
}

func testReplay[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 12)
	p := s.projection("replay", nil)
	s.apply(t, p, events[:6])
	s.apply(t, p, events[:6])  // a replayed batch
	s.apply(t, p, events[3:9]) // overlapping: only 7..9 are new
	s.apply(t, p, events[8:9]) // a single duplicate
	s.check(t, "replay", events[:9], 9)
	s.apply(t, p, events)
	s.check(t, "replay", events, 12)
}

// testConcurrentApply applies overlapping batches from two goroutines at
// once — two runners during a lease hand-over — and gets every event once,
// in order.
func testConcurrentApply[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 60)
	p := s.projection("twice", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 2*12)
	for range 2 {
		wg.Go(func() {
			for i := 0; i < len(events); i += 5 {
				errs <- s.h.Store.Apply(s.ctx, p, events[max(0, i-3):i+5])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.check(t, "twice", events, int64(len(events)))
}

func testForward[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 8)
	p := s.projection("forward", nil)
	s.apply(t, p, events[4:6]) // a projection may start anywhere in the feed
	s.check(t, "forward", events[4:6], 6)
	s.apply(t, p, events[:4]) // older events: skipped
	s.check(t, "forward", events[4:6], 6)
	// A batch whose positions do not increase is refused, with nothing
	// written.
	bad := []persistence.RecordedEvent{events[7], events[6]}
	if err := s.h.Store.Apply(s.ctx, p, bad); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Apply(out of order) = %v, want ErrInvalid", err)
	}
	// A dead letter at an old position changes nothing either.
	if err := s.h.Store.DeadLetter(s.ctx, "forward", events[1], errors.New("late")); err != nil {
		t.Fatal(err)
	}
	s.check(t, "forward", events[4:6], 6)
	if dl, err := s.h.Store.DeadLetters(s.ctx, "forward"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v, %v: an old position was recorded", dl, err)
	}
	// Bad names are refused.
	if err := s.h.Store.Apply(s.ctx, s.projection("Bad Name", nil), events); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Apply(bad name) = %v, want ErrInvalid", err)
	}
}

func testSetup[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 6)
	p := s.projection("setup", nil)
	for i := range events {
		s.apply(t, p, events[i:i+1])
	}
	got, err := s.h.Read(s.ctx, "setup", "setup")
	if err != nil || !slices.Equal(got, []string{"ran"}) {
		t.Fatalf("setup ran %v (%v), want once", got, err)
	}
	// A failing setup fails the batch, with nothing written.
	broken := s.projection("broken", nil)
	broken.Setup = func(context.Context, Tx) error { return errors.New("no table for you") }
	if err := s.h.Store.Apply(s.ctx, broken, events); err == nil {
		t.Fatal("Apply succeeded although Setup failed")
	}
	s.check(t, "broken", nil, 0)
}

func testDeadLetters[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 6)
	p := s.projection("dead", nil)
	s.apply(t, p, events[:2])
	if err := s.h.Store.DeadLetter(s.ctx, "dead", events[2], errors.New("corrupt payload")); err != nil {
		t.Fatal(err)
	}
	s.check(t, "dead", events[:2], 3)
	s.apply(t, p, events) // 3 is skipped: at the checkpoint
	s.check(t, "dead", append(slices.Clone(events[:2]), events[3:]...), 6)
	dl, err := s.h.Store.DeadLetters(s.ctx, "dead")
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Event.ID != events[2].ID || dl[0].Event.GlobalPosition != 3 ||
		dl[0].Event.StreamID != events[2].StreamID || dl[0].Error != "corrupt payload" || dl[0].At.IsZero() {
		t.Fatalf("dead letters %+v", dl)
	}
}

func testIsolation[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 9)
	s.apply(t, s.projection("left", nil), events[:3])
	s.apply(t, s.projection("right", nil), events)
	s.check(t, "left", events[:3], 3)
	s.check(t, "right", events, 9)
}

func testRunnerStop[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 20)
	const k = 12 // the event at index k (position 13) fails
	p := s.projection("stop", func(e persistence.RecordedEvent) error {
		if e.ID == events[k].ID {
			return errors.New("cannot handle " + e.ID)
		}
		return nil
	})
	p.OnFailure = projection.Stop
	r, err := projection.NewRunner(s.feed, s.h.Store, p, projection.Options{Lease: s.leases, BatchSize: 5, Logger: quiet()}) // k falls mid-batch
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(s.ctx); !errors.Is(err, projection.ErrStopped) || !errors.Is(err, projection.ErrHandler) {
		t.Fatalf("Run = %v, want ErrStopped", err)
	}
	s.check(t, "stop", events[:k], int64(k))
	// Fixed, it runs again and finishes: nothing doubled, nothing lost.
	r, _ = s.runner(t, s.projection("stop", nil), projection.Options{BatchSize: 5})
	s.waitFor(t, r, 20)
	s.check(t, "stop", events, 20)
}

func testRunnerSkip[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 15)
	p := s.projection("skip", func(e persistence.RecordedEvent) error {
		if e.ID == events[4].ID || e.ID == events[10].ID {
			return errors.New("corrupt " + e.ID)
		}
		return nil
	})
	p.OnFailure = projection.SkipAndDeadLetter
	r, _ := s.runner(t, p, projection.Options{})
	s.waitFor(t, r, 15)
	kept := slices.DeleteFunc(slices.Clone(events), func(e persistence.RecordedEvent) bool {
		return e.ID == events[4].ID || e.ID == events[10].ID
	})
	s.check(t, "skip", kept, 15)
	dl, err := s.h.Store.DeadLetters(s.ctx, "skip")
	if err != nil || len(dl) != 2 || dl[0].Event.ID != events[4].ID || dl[1].Event.ID != events[10].ID || dl[1].Error != "corrupt "+events[10].ID {
		t.Fatalf("dead letters %+v (%v)", dl, err)
	}
}

func testRunnerRetry[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 10)
	failures := 3
	p := s.projection("retry", func(e persistence.RecordedEvent) error {
		if e.ID == events[6].ID && failures > 0 { // called on the runner's goroutine only
			failures--
			return errors.New("not yet")
		}
		return nil
	})
	r, _ := s.runner(t, p, projection.Options{})
	s.waitFor(t, r, 10)
	s.check(t, "retry", events, 10)
	if dl, _ := s.h.Store.DeadLetters(s.ctx, "retry"); len(dl) != 0 {
		t.Fatalf("Retry dead-lettered %v", dl)
	}
}

func testRebuild[Tx any](t *testing.T, s *suite[Tx]) {
	rb, ok := s.h.Store.(projection.Rebuilder)
	if !ok {
		t.Skip("the store does not implement projection.Rebuilder")
	}
	events := s.seed(t, 30)
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	p := s.projection("rebuilt", nil)
	handle := p.Handle
	seen := 0 // runs on the runner's goroutine only
	p.Handle = func(ctx context.Context, tx Tx, e persistence.RecordedEvent) error {
		// The second time position 20 comes by is the rebuild's (the live
		// model is done by then): it stops there until the test has looked
		// at the live model.
		if e.GlobalPosition == 20 {
			seen++
		}
		if e.GlobalPosition == 20 && seen == 2 {
			entered <- struct{}{}
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return handle(ctx, tx, e)
	}
	r, _ := s.runner(t, p, projection.Options{BatchSize: 4})
	s.waitFor(t, r, 30)
	s.check(t, "rebuilt", events, 30)
	if err := r.Rebuild(s.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-s.ctx.Done():
		t.Fatal("the rebuild never reached position 20")
	}
	// Mid-rebuild, queries see the whole current model.
	s.check(t, "rebuilt", events, 30)
	close(gate)
	deadline, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	for {
		if _, going, err := rb.Rebuilding(deadline, "rebuilt"); err != nil {
			t.Fatal(err)
		} else if !going {
			break
		}
		select {
		case <-deadline.Done():
			t.Fatal("the rebuild did not finish")
		case <-time.After(time.Millisecond):
		}
	}
	s.check(t, "rebuilt", events, 30) // identical
	if got, err := s.h.Read(s.ctx, "rebuilt", "setup"); err != nil || len(got) != 1 {
		t.Fatalf("the rebuilt generation ran setup %v (%v), want once", got, err)
	}
	// And it goes on live from there.
	events = s.seed(t, 3)
	s.waitFor(t, r, 33)
	s.check(t, "rebuilt", events, 33)
}

func testWaitFor[Tx any](t *testing.T, s *suite[Tx]) {
	s.seed(t, 5)
	r, _ := s.runner(t, s.projection("ryw", nil), projection.Options{})
	res, err := s.feed.Append(s.ctx, "order-1", persistence.Any, persistence.EventData{ID: "mine", Type: "test.happened", Data: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, r, res.Position)
	if got, _ := s.h.Read(s.ctx, "ryw", "order-1"); !slices.Contains(got, "mine") {
		t.Fatalf("after WaitFor the model lacks the write: %v", got)
	}
	// A position the feed has not reached: a clean timeout.
	ctx, cancel := context.WithTimeout(s.ctx, 50*time.Millisecond)
	defer cancel()
	err = r.WaitFor(ctx, res.Position+100)
	var lag *projection.LagError
	if !errors.Is(err, projection.ErrNotCaughtUp) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &lag) || lag.Checkpoint != res.Position {
		t.Fatalf("WaitFor beyond the head = %v", err)
	}
	// The same from a process that does not run the projection.
	if err := projection.WaitFor(s.ctx, s.h.Store, "ryw", res.Position, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if lag, err := r.Lag(s.ctx); err != nil || lag != 0 {
		t.Fatalf("Lag = %d, %v", lag, err)
	}
}

func testPause[Tx any](t *testing.T, s *suite[Tx]) {
	s.seed(t, 5)
	r, _ := s.runner(t, s.projection("paused", nil), projection.Options{})
	s.waitFor(t, r, 5)
	r.Pause()
	if !r.Paused() {
		t.Fatal("not paused")
	}
	// Events appended while paused: none applied. (A batch in flight when
	// Pause was called may still land; here there is none.)
	s.seed(t, 4)
	ctx, cancel := context.WithTimeout(s.ctx, 100*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(ctx, 6); !errors.Is(err, projection.ErrNotCaughtUp) {
		t.Fatalf("a paused runner applied events: %v", err)
	}
	if lag, err := r.Lag(s.ctx); err != nil || lag != 4 {
		t.Fatalf("Lag while paused = %d, %v; want 4", lag, err)
	}
	r.Resume()
	s.waitFor(t, r, 9)
	s.check(t, "paused", s.all(t), 9)
}

func testTakeover[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 10)
	first, stopFirst := s.runner(t, s.projection("ha", nil), projection.Options{})
	s.waitFor(t, first, 10)
	second, _ := s.runner(t, s.projection("ha", nil), projection.Options{})
	if !first.Active() || second.Active() {
		t.Fatalf("active: first %v, second %v; want only the first", first.Active(), second.Active())
	}
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}
	events = append(events, s.seed(t, 5)[10:]...)
	s.waitFor(t, second, 15)
	if !second.Active() {
		t.Fatal("the second runner did not take over")
	}
	s.check(t, "ha", events, 15)
}

// applier returns the store as a StreamApplier, or skips the test.
func (s *suite[Tx]) applier(t *testing.T) projection.StreamApplier[Tx] {
	t.Helper()
	a, ok := s.h.Store.(projection.StreamApplier[Tx])
	if !ok {
		t.Skip("the store does not implement projection.StreamApplier")
	}
	return a
}

// checkLists asserts the model of name holds exactly events, in each
// stream's order, and that each stream's applied version is its last.
func (s *suite[Tx]) checkLists(t *testing.T, a projection.StreamApplier[Tx], name string, events []persistence.RecordedEvent) {
	t.Helper()
	w := want(events)
	last := map[string]int64{}
	for _, e := range events {
		last[e.StreamID] = e.Version
	}
	for _, stream := range streams {
		got, err := s.h.Read(s.ctx, name, stream)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, w[stream]) {
			t.Fatalf("%s: stream %s holds %v, want %v", name, stream, got, w[stream])
		}
		if v, err := a.StreamVersion(s.ctx, name, stream); err != nil || v != last[stream] {
			t.Fatalf("%s: stream %s at version %d (%v), want %d", name, stream, v, err, last[stream])
		}
	}
}

// byStream returns events grouped by stream, each in stream order.
func byStream(events []persistence.RecordedEvent) map[string][]persistence.RecordedEvent {
	m := map[string][]persistence.RecordedEvent{}
	for _, e := range events {
		m[e.StreamID] = append(m[e.StreamID], e)
	}
	return m
}

func testStreamDedup[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 12)
	p := s.projection("bus_dedup", nil)
	g := byStream(events)
	// Streams arrive one after another — far from the global order — and
	// with duplicates: a redelivered event, a redelivered run of events.
	var deliveries []persistence.RecordedEvent
	for _, stream := range []string{"order-3", "order-1", "order-2"} {
		es := g[stream]
		deliveries = append(deliveries, es[0], es[0], es[1])
		deliveries = append(deliveries, es[:2]...)
		deliveries = append(deliveries, es[2:]...)
		deliveries = append(deliveries, es[len(es)-1])
	}
	for _, e := range deliveries {
		if err := a.ApplyEvent(s.ctx, p, e); err != nil {
			t.Fatal(err)
		}
	}
	s.checkLists(t, a, "bus_dedup", events)
	if got, err := s.h.Read(s.ctx, "bus_dedup", "setup"); err != nil || !slices.Equal(got, []string{"ran"}) {
		t.Fatalf("setup ran %v (%v), want once", got, err)
	}
	if v, err := a.StreamVersion(s.ctx, "bus_dedup", "never"); err != nil || v != 0 {
		t.Fatalf("StreamVersion of an unknown stream = %d, %v", v, err)
	}
}

func testStreamFailure[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 9)
	g := byStream(events)
	boom := errors.New("boom")
	failing := g["order-2"][1]
	p := s.projection("bus_fail", func(e persistence.RecordedEvent) error {
		if e.ID == failing.ID {
			return boom
		}
		return nil
	})
	for _, e := range events {
		err := a.ApplyEvent(s.ctx, p, e)
		if e.ID != failing.ID {
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		var ae *projection.ApplyError
		if !errors.As(err, &ae) || !errors.Is(err, boom) || ae.Index != 0 || ae.Event.ID != failing.ID {
			t.Fatalf("ApplyEvent = %v, want an *ApplyError for %s", err, failing.ID)
		}
		if v, err := a.StreamVersion(s.ctx, "bus_fail", "order-2"); err != nil || v != failing.Version-1 {
			t.Fatalf("after the failure, order-2 at version %d (%v), want %d", v, err, failing.Version-1)
		}
		break // the bus would retry this event before the stream's next
	}
	// Fixed, the bus redelivers from the failed event on.
	fixed := s.projection("bus_fail", nil)
	for _, e := range events {
		if err := a.ApplyEvent(s.ctx, fixed, e); err != nil {
			t.Fatal(err)
		}
	}
	s.checkLists(t, a, "bus_fail", events)
}

func testStoppedMidBatch[Tx any](t *testing.T, s *suite[Tx]) {
	events := s.seed(t, 20)
	p := s.projection("stopped", nil)
	s.apply(t, p, events[:5])
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stopping := s.projection("stopped", func(e persistence.RecordedEvent) error {
		if e.GlobalPosition == 12 {
			cancel() // the process stops mid-batch
		}
		return nil
	})
	err := s.h.Store.Apply(ctx, stopping, events[5:15])
	var ae *projection.ApplyError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Apply with ctx cancelled mid-batch = %v, want a store error that is not an *ApplyError", err)
	}
	s.check(t, "stopped", events[:5], 5)
	s.apply(t, p, events[3:]) // the rerun overlaps what landed: nothing doubled
	s.check(t, "stopped", events, 20)
}

// cut returns the harness's Cut, or skips the test.
func (s *suite[Tx]) cut(t *testing.T) func() {
	t.Helper()
	if s.h.Cut == nil {
		t.Skip("the harness cannot cut the store's connections")
	}
	return s.h.Cut
}

func testCutMidBatch[Tx any](t *testing.T, s *suite[Tx]) {
	cut := s.cut(t)
	events := s.seed(t, 20)
	p := s.projection("cut", nil)
	s.apply(t, p, events[:5])
	cutting := s.projection("cut", func(e persistence.RecordedEvent) error {
		if e.GlobalPosition == 9 {
			cut()
		}
		return nil
	})
	err := s.h.Store.Apply(s.ctx, cutting, events[5:15])
	var ae *projection.ApplyError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Apply across a lost connection = %v, want a store error that is not an *ApplyError", err)
	}
	s.check(t, "cut", events[:5], 5)
	s.apply(t, p, events[3:])
	s.check(t, "cut", events, 20)
}

func testCutNeverDeadLetters[Tx any](t *testing.T, s *suite[Tx]) {
	cut := s.cut(t)
	var mu sync.Mutex
	cuts := map[int64]bool{7: true, 18: true, 19: true}
	p := s.projection("cut_runner", func(e persistence.RecordedEvent) error {
		mu.Lock()
		cutNow := cuts[e.GlobalPosition]
		delete(cuts, e.GlobalPosition)
		mu.Unlock()
		if cutNow {
			cut()
		}
		return nil
	})
	p.OnFailure = projection.SkipAndDeadLetter
	r, _ := s.runner(t, p, projection.Options{BatchSize: 6})
	events := s.seed(t, 25)
	s.waitFor(t, r, 25)
	s.check(t, "cut_runner", events, 25)
	if dl, err := s.h.Store.DeadLetters(s.ctx, "cut_runner"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v (%v): a lost connection was blamed on an event", dl, err)
	}
}

func testStreamGap[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 9)
	es := byStream(events)["order-1"] // versions 1, 2, 3
	p := s.projection("bus_gap", nil)
	if err := a.ApplyEvent(s.ctx, p, es[0]); err != nil {
		t.Fatal(err)
	}
	err := a.ApplyEvent(s.ctx, p, es[2])
	var gap *projection.GapError
	if !errors.Is(err, projection.ErrOutOfOrder) || !errors.As(err, &gap) || gap.Applied != 1 || gap.Version != 3 || gap.Stream != "order-1" {
		t.Fatalf("ApplyEvent(version 3 after 1) = %v, want a *GapError", err)
	}
	if got, _ := s.h.Read(s.ctx, "bus_gap", "order-1"); !slices.Equal(got, []string{es[0].ID}) {
		t.Fatalf("after the gap, order-1 holds %v", got)
	}
	// A stream's first delivery must be its first version, too.
	if err := a.ApplyEvent(s.ctx, p, byStream(events)["order-2"][1]); !errors.Is(err, projection.ErrOutOfOrder) {
		t.Fatalf("ApplyEvent(version 2 of a new stream) = %v, want ErrOutOfOrder", err)
	}
	for _, e := range events {
		if err := a.ApplyEvent(s.ctx, p, e); err != nil {
			t.Fatal(err)
		}
	}
	s.checkLists(t, a, "bus_gap", events)
}

func testBusPolicies[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 9)
	bad := byStream(events)["order-2"][1]
	opts := projection.BusOptions{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	deliver := func(h bus.Handler, e persistence.RecordedEvent) error {
		return h(s.ctx, bus.Delivery{Message: bus.Message{Topic: "orders", Key: e.StreamID, Event: e}})
	}
	failing := func(name string, policy projection.FailurePolicy, failures int) projection.Projection[Tx] {
		left := failures // the handler runs on the caller's goroutine
		p := s.projection(name, func(e persistence.RecordedEvent) error {
			if e.ID == bad.ID && left != 0 {
				left--
				return errors.New("cannot handle " + e.ID)
			}
			return nil
		})
		p.OnFailure = policy
		return p
	}

	// SkipAndDeadLetter: recorded, skipped, and the stream goes on.
	h, err := projection.BusHandler(a, failing("bus_skip", projection.SkipAndDeadLetter, -1), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := deliver(h, e); err != nil {
			t.Fatal(err)
		}
	}
	kept := slices.DeleteFunc(slices.Clone(events), func(e persistence.RecordedEvent) bool { return e.ID == bad.ID })
	if got, _ := s.h.Read(s.ctx, "bus_skip", "order-2"); !slices.Equal(got, want(kept)["order-2"]) {
		t.Fatalf("order-2 holds %v, want %v", got, want(kept)["order-2"])
	}
	if v, err := a.StreamVersion(s.ctx, "bus_skip", "order-2"); err != nil || v != byStream(events)["order-2"][2].Version {
		t.Fatalf("order-2 at version %d (%v): the stream did not go on", v, err)
	}
	dl, err := s.h.Store.DeadLetters(s.ctx, "bus_skip")
	if err != nil || len(dl) != 1 || dl[0].Event.ID != bad.ID || dl[0].Error != "cannot handle "+bad.ID {
		t.Fatalf("dead letters %+v (%v)", dl, err)
	}
	if err := deliver(h, bad); err != nil { // redelivered: a duplicate now
		t.Fatal(err)
	}
	if dl, _ := s.h.Store.DeadLetters(s.ctx, "bus_skip"); len(dl) != 1 {
		t.Fatalf("a redelivery dead-lettered again: %+v", dl)
	}

	// Retry: the handler retries in place until it succeeds.
	h, err = projection.BusHandler(a, failing("bus_retry", projection.Retry, 3), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := deliver(h, e); err != nil {
			t.Fatal(err)
		}
	}
	s.checkLists(t, a, "bus_retry", events)

	// Stop: the bus gets a permanent failure, and nothing moves.
	h, err = projection.BusHandler(a, failing("bus_stop", projection.Stop, -1), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		err := deliver(h, e)
		if e.ID != bad.ID {
			if err != nil && e.StreamID != bad.StreamID {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, projection.ErrStopped) || !errors.Is(err, bus.ErrPermanent) || !errors.Is(err, projection.ErrHandler) {
			t.Fatalf("under Stop, the handler returned %v, want a permanent ErrStopped", err)
		}
	}
	if v, err := a.StreamVersion(s.ctx, "bus_stop", bad.StreamID); err != nil || v != bad.Version-1 {
		t.Fatalf("under Stop, %s at version %d (%v), want %d", bad.StreamID, v, err, bad.Version-1)
	}
}

// testBusSkipMarkers: a skip marker in an event's place — the relay could
// not publish the event — is dead-lettered and moves its stream past that
// version under every policy; the handler never sees it, and the stream's
// later events are applied.
func testBusSkipMarkers[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 9)
	bad := byStream(events)["order-2"][1]
	for i, policy := range []projection.FailurePolicy{projection.Retry, projection.SkipAndDeadLetter, projection.Stop} {
		name := fmt.Sprint("bus_marker_", i)
		p := s.projection(name, func(e persistence.RecordedEvent) error {
			if _, ok := bus.Skipped(e); ok {
				return errors.New("the handler saw a marker")
			}
			return nil
		})
		p.OnFailure = policy
		h, err := projection.BusHandler(a, p, projection.BusOptions{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			m := bus.Message{Topic: "orders", Key: e.StreamID, Event: e}
			if e.ID == bad.ID {
				m = bus.SkipMarker(m, "too large for the broker")
			}
			if err := h(s.ctx, bus.Delivery{Message: m}); err != nil {
				t.Fatalf("%s: %v", policy, err)
			}
		}
		kept := slices.DeleteFunc(slices.Clone(events), func(e persistence.RecordedEvent) bool { return e.ID == bad.ID })
		if got, _ := s.h.Read(s.ctx, name, "order-2"); !slices.Equal(got, want(kept)["order-2"]) {
			t.Fatalf("%s: order-2 holds %v, want %v", policy, got, want(kept)["order-2"])
		}
		dl, err := s.h.Store.DeadLetters(s.ctx, name)
		if err != nil || len(dl) != 1 || dl[0].Event.ID != bad.ID || dl[0].Event.Version != bad.Version ||
			!strings.Contains(dl[0].Error, "relay passed the event over") || !strings.Contains(dl[0].Error, "too large for the broker") {
			t.Fatalf("%s: dead letters %+v (%v)", policy, dl, err)
		}
	}
}

func testStreamConcurrency[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 60)
	p := s.projection("bus_concurrent", nil)
	var wg sync.WaitGroup
	errs := make(chan error, len(streams))
	for _, es := range byStream(events) {
		wg.Go(func() {
			for _, e := range es { // each stream delivered twice over, concurrently with the others
				for range 2 {
					if err := a.ApplyEvent(s.ctx, p, e); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.checkLists(t, a, "bus_concurrent", events)
	if got, err := s.h.Read(s.ctx, "bus_concurrent", "setup"); err != nil || !slices.Equal(got, []string{"ran"}) {
		t.Fatalf("setup ran %v (%v), want once", got, err)
	}
}

func testBusFed[Tx any](t *testing.T, s *suite[Tx]) {
	a := s.applier(t)
	events := s.seed(t, 15)
	b := busmemory.New(busmemory.WithPartitions(3))
	h, err := projection.BusHandler(a, s.projection("bus_fed", nil), projection.BusOptions{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := projection.BusHandler(a, s.projection("Bad Name", nil), projection.BusOptions{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("BusHandler(bad name) = %v, want ErrInvalid", err)
	}
	publish := func(es []persistence.RecordedEvent) {
		t.Helper()
		msgs := make([]bus.Message, len(es))
		for i, e := range es {
			msgs[i] = bus.Message{Topic: "orders", Key: e.StreamID, Event: e}
		}
		if err := b.Publish(s.ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	// One stream's last event arrives ahead of the rest (a batch the
	// broker refused in part and the relay re-sent): passed over, it is
	// applied when it comes again in order.
	early := byStream(events)["order-2"]
	publish(early[len(early)-1:])
	publish(events)
	publish(events[5:10]) // at-least-once: duplicates
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan error, 1)
	go func() { done <- b.Subscribe(ctx, "projection.bus_fed", []string{"orders"}, h) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	last := events[len(events)-1]
	for _, e := range byStream(events) {
		tail := e[len(e)-1]
		if err := projection.WaitForStream(s.ctx, a, "bus_fed", tail.StreamID, tail.Version, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	s.checkLists(t, a, "bus_fed", events)
	// A version not yet applied: a clean timeout naming the stream.
	short, stop := context.WithTimeout(s.ctx, 20*time.Millisecond)
	defer stop()
	err = projection.WaitForStream(short, a, "bus_fed", last.StreamID, last.Version+1, time.Millisecond)
	var lag *projection.LagError
	if !errors.Is(err, projection.ErrNotCaughtUp) || !errors.As(err, &lag) || lag.Stream != last.StreamID || lag.Checkpoint != last.Version {
		t.Fatalf("WaitForStream beyond the stream = %v", err)
	}
}

// Events returns n recorded events, as an event store records them, of
// three streams "s-0", "s-1" and "s-2" in turn, with ids "e1" to "e<n>" —
// input for a store's own tests beyond the suite.
func Events(t testing.TB, n int) []persistence.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	feed := evmemory.New()
	for i := range n {
		_, err := feed.Append(ctx, fmt.Sprintf("s-%d", i%3), persistence.Any, persistence.EventData{
			ID: fmt.Sprintf("e%d", i+1), Type: "test.happened", Data: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	events, err := feed.ReadAll(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// Start runs r on a goroutine of its own until stop is called — at the
// latest at the end of the test — and fails t if Run returns an error.
func Start[Tx any](t testing.TB, r *projection.Runner[Tx]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("projectiontest: Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// CatchUp times, for benchmark b, a fresh runner of p catching up with
// feed to position head in batches of batch events: the timer runs only
// while the runner does. It fails b if the runner fails.
func CatchUp[Tx any](ctx context.Context, b *testing.B, feed persistence.EventStore, store projection.Store[Tx], p projection.Projection[Tx], head int64, batch int) {
	b.Helper()
	r, err := projection.NewRunner(feed, store, p, projection.Options{
		Lease: evmemory.NewLeases(), BatchSize: batch, PollInterval: 5 * time.Millisecond, Logger: quiet(),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.StartTimer()
	go func() { done <- r.Run(runCtx) }()
	waitErr := r.WaitFor(ctx, head)
	b.StopTimer()
	stop()
	if err := <-done; err != nil {
		b.Fatalf("Run: %v", err)
	}
	if waitErr != nil {
		b.Fatalf("WaitFor(%d): %v", head, waitErr)
	}
}

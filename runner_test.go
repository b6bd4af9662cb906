package composable_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink collects the actions a runner delivers.
type sink[A any] struct {
	mu  sync.Mutex
	got []A
	ch  chan struct{}
}

func newSink[A any]() *sink[A] { return &sink[A]{ch: make(chan struct{}, 1024)} }

func (s *sink[A]) send(_ context.Context, a A) {
	s.mu.Lock()
	s.got = append(s.got, a)
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *sink[A]) actions() []A {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// waitFor waits until n actions have arrived.
func (s *sink[A]) waitFor(t *testing.T, n int) []A {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		if got := s.actions(); len(got) >= n {
			return got
		}
		select {
		case <-s.ch:
		case <-timeout:
			t.Fatalf("waited for %d actions, got %v", n, s.actions())
		}
	}
}

// finished returns a done callback and a channel that receives its error.
func finished() (func(error), chan error) {
	ch := make(chan error, 1)
	return func(err error) { ch <- err }, ch
}

func waitDone(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("effect did not finish")
		return nil
	}
}

func newRunner(t *testing.T) (*composable.EffectRunner[string], *sink[string], *testkit.ManualClock) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	s := newSink[string]()
	r := composable.NewEffectRunner(clock, s.send)
	t.Cleanup(r.Close)
	return r, s, clock
}

func TestNoneFinishesAtOnce(t *testing.T) {
	r, s, _ := newRunner(t)
	done, ch := finished()
	r.Start(context.Background(), composable.None[string](), done)
	if err := waitDone(t, ch); err != nil {
		t.Fatal(err)
	}
	if r.InFlight() != 0 || len(s.actions()) != 0 {
		t.Fatalf("in flight %d, actions %v", r.InFlight(), s.actions())
	}
}

func TestSendDeliversInOrderSynchronously(t *testing.T) {
	r, s, _ := newRunner(t)
	r.Start(context.Background(), composable.Send("a", "b", "c"), nil)
	if got := s.actions(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("got %v", got)
	}
}

func TestRunSendsInOrderAndDropsLateSends(t *testing.T) {
	r, s, _ := newRunner(t)
	var late func(string)
	done, ch := finished()
	r.Start(context.Background(), composable.Run(func(_ context.Context, send func(string)) {
		for _, a := range []string{"1", "2", "3"} {
			send(a)
		}
		late = send
	}), done)
	if err := waitDone(t, ch); err != nil {
		t.Fatal(err)
	}
	late("after return")
	if got := s.actions(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("got %v", got)
	}
}

func TestRunCarriesContextValuesButNotCancellation(t *testing.T) {
	r, s, _ := newRunner(t)
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "trace-1"))
	cancel() // the request is over; the effect must still run
	done, ch := finished()
	r.Start(parent, composable.Run(func(ctx context.Context, send func(string)) {
		if ctx.Err() != nil {
			send("cancelled")
			return
		}
		send(ctx.Value(key{}).(string))
	}), done)
	_ = waitDone(t, ch)
	if got := s.actions(); !slices.Equal(got, []string{"trace-1"}) {
		t.Fatalf("got %v", got)
	}
}

func TestDelayFiresOnlyWhenClockAdvances(t *testing.T) {
	r, s, clock := newRunner(t)
	done, ch := finished()
	r.Start(context.Background(), composable.Delay(time.Second, composable.Send("tick")), done)
	if clock.Pending() != 1 {
		t.Fatalf("timer not armed synchronously: pending %d", clock.Pending())
	}
	clock.Advance(999 * time.Millisecond)
	if got := s.actions(); len(got) != 0 || r.InFlight() != 1 {
		t.Fatalf("fired early: %v", got)
	}
	clock.Advance(time.Millisecond)
	_ = waitDone(t, ch)
	if got := s.actions(); !slices.Equal(got, []string{"tick"}) {
		t.Fatalf("got %v", got)
	}
}

func TestMergeRunsAllAndFinishesAfterTheLast(t *testing.T) {
	r, s, clock := newRunner(t)
	done, ch := finished()
	r.Start(context.Background(), composable.Merge(
		composable.Send("now"),
		composable.Delay(2*time.Second, composable.Send("two")),
		composable.Delay(time.Second, composable.Send("one")),
		composable.None[string](),
	), done)
	if clock.Pending() != 2 {
		t.Fatalf("pending %d, want both timers armed at once", clock.Pending())
	}
	clock.Advance(time.Second)
	s.waitFor(t, 2)
	if r.InFlight() != 1 {
		t.Fatalf("merge finished before its last child")
	}
	clock.Advance(time.Second)
	_ = waitDone(t, ch)
	if got := s.actions(); !slices.Equal(got, []string{"now", "one", "two"}) {
		t.Fatalf("got %v", got)
	}
}

func TestConcatRunsOneAfterAnother(t *testing.T) {
	r, s, clock := newRunner(t)
	done, ch := finished()
	r.Start(context.Background(), composable.Concat(
		composable.Delay(time.Second, composable.Send("first")),
		composable.Send("second"),
		composable.Delay(time.Second, composable.Send("third")),
	), done)
	if clock.Pending() != 1 {
		t.Fatalf("pending %d: later steps must not be armed before earlier ones finish", clock.Pending())
	}
	clock.Advance(time.Second)
	s.waitFor(t, 2)
	if err := clock.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	_ = waitDone(t, ch)
	if got := s.actions(); !slices.Equal(got, []string{"first", "second", "third"}) {
		t.Fatalf("got %v", got)
	}
}

func TestCancelStopsRunningEffects(t *testing.T) {
	r, s, clock := newRunner(t)
	type timerID struct{}
	done, ch := finished()
	r.Start(context.Background(), composable.Cancellable(timerID{}, composable.Concat(
		composable.Delay(time.Second, composable.Send("fired")),
		composable.Send("after"),
	)), done)
	r.Start(context.Background(), composable.Cancel[string](timerID{}), nil)
	_ = waitDone(t, ch)
	clock.Advance(time.Hour)
	if got := s.actions(); len(got) != 0 {
		t.Fatalf("cancelled effect delivered %v", got)
	}
	if r.InFlight() != 0 {
		t.Fatalf("in flight %d after cancel", r.InFlight())
	}
}

func TestCancelCancelsRunContext(t *testing.T) {
	r, s, _ := newRunner(t)
	started := make(chan struct{})
	done, ch := finished()
	r.Start(context.Background(), composable.Cancellable("job", composable.Run(func(ctx context.Context, send func(string)) {
		close(started)
		<-ctx.Done()
		send("too late")
	})), done)
	<-started
	r.Start(context.Background(), composable.Cancel[string]("job"), nil)
	_ = waitDone(t, ch)
	if got := s.actions(); len(got) != 0 {
		t.Fatalf("got %v", got)
	}
}

func TestCancelInFlightKeepsOnlyTheLatest(t *testing.T) {
	r, s, clock := newRunner(t)
	debounce := func(q string) composable.Effect[string] {
		return composable.CancelInFlight("search", composable.Delay(300*time.Millisecond, composable.Send(q)))
	}
	for _, q := range []string{"g", "go", "gop"} {
		r.Start(context.Background(), debounce(q), nil)
		clock.Advance(100 * time.Millisecond)
	}
	clock.Advance(300 * time.Millisecond)
	s.waitFor(t, 1)
	r.Close()
	if got := s.actions(); !slices.Equal(got, []string{"gop"}) {
		t.Fatalf("got %v", got)
	}
}

func TestCancelIDsAreComparedByValueAndType(t *testing.T) {
	r, s, clock := newRunner(t)
	type id string
	r.Start(context.Background(), composable.Cancellable(id("x"), composable.Delay(time.Second, composable.Send("typed"))), nil)
	r.Start(context.Background(), composable.Cancellable("x", composable.Delay(time.Second, composable.Send("plain"))), nil)
	r.Start(context.Background(), composable.Cancel[string]("x"), nil)
	clock.Advance(time.Second)
	if got := s.waitFor(t, 1); !slices.Equal(got, []string{"typed"}) {
		t.Fatalf("got %v", got)
	}
}

func TestPanicsAreRecoveredAndReported(t *testing.T) {
	tests := []struct {
		name   string
		effect composable.Effect[string]
		want   []string
	}{
		{
			name: "run",
			effect: composable.Run(func(_ context.Context, send func(string)) {
				send("before")
				panic("boom")
			}),
			want: []string{"before"},
		},
		{
			name: "map",
			effect: composable.Map(composable.Send(1, 0, 2), func(n int) string {
				if n == 0 {
					panic(errors.New("zero"))
				}
				return string(rune('0' + n))
			}),
			want: []string{"1", "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, s, _ := newRunner(t)
			done, ch := finished()
			r.Start(context.Background(), tt.effect, done)
			err := waitDone(t, ch)
			var perr *composable.PanicError
			if !errors.Is(err, composable.ErrPanic) || !errors.As(err, &perr) || len(perr.Stack) == 0 {
				t.Fatalf("err = %v, want a *PanicError with a stack", err)
			}
			if got := s.actions(); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCloseCancelsAndWaits(t *testing.T) {
	r, s, _ := newRunner(t)
	var stopped sync.WaitGroup
	stopped.Add(1)
	started := make(chan struct{})
	r.Start(context.Background(), composable.Run(func(ctx context.Context, _ func(string)) {
		defer stopped.Done()
		close(started)
		<-ctx.Done()
	}), nil)
	<-started
	r.Close()
	stopped.Wait() // returns at once if Close waited
	if r.InFlight() != 0 {
		t.Fatalf("in flight %d after Close", r.InFlight())
	}
	done, ch := finished()
	r.Start(context.Background(), composable.Send("x"), done)
	if err := waitDone(t, ch); err != nil {
		t.Fatal(err)
	}
	if got := s.actions(); len(got) != 0 {
		t.Fatalf("a closed runner delivered %v", got)
	}
	r.Close() // idempotent
}

func TestUnhashableCancellationIDPanicsWhereTheReducerRuns(t *testing.T) {
	defer func() {
		if v := recover(); v == nil {
			t.Fatal("no panic for an unhashable id")
		}
	}()
	_ = composable.Cancellable[string, any]([]int{1}, composable.Send("x"))
}

// TestCancelledEffectsActionsAreMarked: an action sent before Cancel ran but
// not yet reduced is marked, so runtimes drop it; an action of an effect
// that simply finished is not.
func TestCancelledEffectsActionsAreMarked(t *testing.T) {
	type sent struct {
		ctx    context.Context
		action string
	}
	got := make(chan sent, 10)
	r := composable.NewEffectRunner(testkit.NewManualClock(time.Unix(0, 0)), func(ctx context.Context, a string) { got <- sent{ctx, a} })
	defer r.Close()
	r.Start(context.Background(), composable.Send("finished"), nil)
	r.Start(context.Background(), composable.Cancellable("job", composable.Run(func(ctx context.Context, send func(string)) {
		send("queued")
		<-ctx.Done()
	})), nil)
	finishedOne, queuedOne := <-got, <-got
	r.Start(context.Background(), composable.Cancel[string]("job"), nil)
	if composable.Cancelled(finishedOne.ctx) {
		t.Error("an action of a finished effect is marked cancelled")
	}
	if !composable.Cancelled(queuedOne.ctx) {
		t.Error("an action of a cancelled effect is not marked")
	}
	if composable.Cancelled(context.Background()) {
		t.Error("a plain context is marked cancelled")
	}
}

func TestStartRacingCloseNeverOutlivesClose(t *testing.T) {
	for range 50 {
		r := composable.NewEffectRunner(nil, func(context.Context, int) {})
		var ran, afterClose atomic.Int64
		var closed atomic.Bool
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.Start(context.Background(), composable.Run(func(ctx context.Context, _ func(int)) {
					if closed.Load() {
						afterClose.Add(1)
					}
					ran.Add(1)
					<-ctx.Done()
				}), nil)
			}()
		}
		r.Close()
		closed.Store(true)
		wg.Wait()
		if r.InFlight() != 0 || afterClose.Load() != 0 {
			t.Fatalf("in flight %d, ran after Close %d", r.InFlight(), afterClose.Load())
		}
	}
}

// TestContextDoesNotGrowAlongEffectChains feeds each effect's action back as
// the next effect, as a runtime does, for many hops.
func TestContextDoesNotGrowAlongEffectChains(t *testing.T) {
	type key struct{}
	var r *composable.EffectRunner[int]
	sizes := make(chan int, 2)
	r = composable.NewEffectRunner(nil, func(ctx context.Context, hop int) {
		if hop == 1 || hop == 500 {
			sizes <- len(fmt.Sprint(ctx))
		}
		if hop < 500 {
			r.Start(ctx, composable.Send(hop+1), nil)
		}
	})
	defer r.Close()
	r.Start(context.WithValue(context.Background(), key{}, "trace"), composable.Send(1), nil)
	first, last := <-sizes, <-sizes
	if last != first {
		t.Fatalf("context grew from %d to %d characters over 500 hops", first, last)
	}
}

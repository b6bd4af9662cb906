package testkit

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/composable-go/composable"
)

// TB is the part of [testing.TB] the test kit uses. Tests pass their
// *testing.T; the kit's own tests pass a recorder to prove that failures are
// reported.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Cleanup(func())
}

// DefaultTimeout bounds how long a [TestStore] waits, in real time, for an
// effect to deliver an expected action or to finish.
const DefaultTimeout = time.Second

// TestStore runs a reducer step by step under a test's control, in the
// spirit of TCA's TestStore, and is exhaustive: the test fails when
//
//   - a step changes the state other than the test asserted,
//   - an effect sends an action the test did not [TestStore.Receive],
//   - an effect is still running when the test ends (see [TestStore.Finish]),
//   - the reducer or an effect panics.
//
// Effects really run (on goroutines, as in production) but on a
// [ManualClock], so delays fire only when the test advances the clock.
// Actions that effects send are queued until the test receives them: the
// reducer never runs behind the test's back.
//
// A TestStore is driven by one test goroutine; it is not for concurrent use.
type TestStore[S, A, E any] struct {
	t       TB
	reducer composable.Reducer[S, A, E]
	env     E
	state   S
	clock   *ManualClock
	timeout time.Duration
	runner  *composable.EffectRunner[A]
	compare cmp.Options

	mu       sync.Mutex
	queue    []queued[A]
	arrived  chan struct{} // signalled when an action is queued
	failures []error       // panics reported by effects
	finished bool
}

// queued is an action an effect sent, with the context that tells whether
// its effect was cancelled since.
type queued[A any] struct {
	ctx    context.Context
	action A
}

// Option configures a [TestStore].
type Option func(*options)

type options struct {
	clock   *ManualClock
	timeout time.Duration
	compare cmp.Options
}

// WithClock makes the store's effects use clock, typically the same clock
// the test puts into the reducer's environment. By default the store has its
// own clock starting at 2026-01-01T00:00:00Z.
func WithClock(clock *ManualClock) Option { return func(o *options) { o.clock = clock } }

// WithTimeout sets how long the store waits, in real time, for effects (see
// [DefaultTimeout]). It bounds failing tests only: passing ones never wait
// for it.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithCompareOptions adds go-cmp options used when comparing states and
// actions, e.g. cmpopts.EquateEmpty().
func WithCompareOptions(opts ...cmp.Option) Option {
	return func(o *options) { o.compare = append(o.compare, opts...) }
}

// NewTestStore returns a store holding initial, ready for the test to send
// actions. The store finishes itself in t.Cleanup, so a forgotten action or
// effect fails the test even without an explicit [TestStore.Finish].
func NewTestStore[S, A, E any](t TB, reducer composable.Reducer[S, A, E], initial S, env E, opts ...Option) *TestStore[S, A, E] {
	t.Helper()
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	ts := &TestStore[S, A, E]{
		t:       t,
		reducer: reducer,
		env:     env,
		state:   deepCopy(initial),
		clock:   o.clock,
		timeout: o.timeout,
		arrived: make(chan struct{}, 1),
		compare: append(cmp.Options{
			protocmp.Transform(),
			cmp.Exporter(func(reflect.Type) bool { return true }),
			cmpopts.EquateErrors(),
		}, o.compare...),
	}
	ts.runner = composable.NewEffectRunner(o.clock, func(ctx context.Context, a A) {
		ts.mu.Lock()
		ts.queue = append(ts.queue, queued[A]{ctx: ctx, action: a})
		ts.mu.Unlock()
		select {
		case ts.arrived <- struct{}{}:
		default:
		}
	})
	t.Cleanup(ts.Finish)
	return ts
}

// State returns a copy of the current state.
func (ts *TestStore[S, A, E]) State() S { return deepCopy(ts.state) }

// Clock returns the store's manual clock.
func (ts *TestStore[S, A, E]) Clock() *ManualClock { return ts.clock }

// Send runs the reducer on action and checks the resulting state: expect
// receives a copy of the state before the step and must change it into the
// state the test expects after it. A nil expect asserts that the state did not
// change. Send fails the test if effect actions are still waiting to be
// received: handle them first.
func (ts *TestStore[S, A, E]) Send(action A, expect func(state *S)) {
	ts.t.Helper()
	ts.reportFailures()
	pending := ts.pending(false)
	if len(pending) > 0 {
		ts.t.Errorf("testkit: Send(%T) while %d received action(s) were not asserted: %s", action, len(pending), ts.describe(pending))
	}
	ts.step("Send", action, expect)
}

// Receive waits for the next action sent by an effect, checks that it equals
// expected, runs the reducer on it and checks the resulting state as in
// [TestStore.Send]. It fails the test if no action arrives within the
// store's timeout.
func (ts *TestStore[S, A, E]) Receive(expected A, expect func(state *S)) {
	ts.t.Helper()
	ts.reportFailures()
	got, ok := ts.next()
	if !ok {
		ts.t.Errorf("testkit: Receive(%T): no action arrived within %v (in flight: %d effect(s); pending timers: %d — advance the clock?)",
			expected, ts.timeout, ts.runner.InFlight(), ts.clock.Pending())
		return
	}
	if diff := cmp.Diff(expected, got, ts.compare); diff != "" {
		ts.t.Errorf("testkit: received an unexpected action (-want +got):\n%s", diff)
		return
	}
	ts.step("Receive", got, expect)
}

// Advance moves the store's clock forward by d, firing due timers. Actions
// the fired effects send are then waiting for [TestStore.Receive].
func (ts *TestStore[S, A, E]) Advance(d time.Duration) {
	ts.t.Helper()
	ts.clock.Advance(d)
}

// Finish checks that every effect action was received and that no effect is
// still running (waiting up to the store's timeout for effects that are about
// to end), then cancels whatever is left. It runs automatically at test
// cleanup; calling it earlier is allowed, and further calls do nothing.
func (ts *TestStore[S, A, E]) Finish() {
	ts.t.Helper()
	ts.mu.Lock()
	if ts.finished {
		ts.mu.Unlock()
		return
	}
	ts.finished = true
	ts.mu.Unlock()

	deadline := time.Now().Add(ts.timeout)
	for ts.runner.InFlight() > 0 && time.Now().Before(deadline) {
		select {
		case <-ts.arrived:
		case <-time.After(time.Millisecond):
		}
	}
	if n := ts.runner.InFlight(); n > 0 {
		ts.t.Errorf("testkit: %d effect(s) still running at the end of the test (pending timers: %d); cancel them, or advance the clock and receive their actions", n, ts.clock.Pending())
	}
	ts.runner.Close()
	ts.reportFailures()
	pending := ts.pending(true)
	if len(pending) > 0 {
		ts.t.Errorf("testkit: %d received action(s) were not asserted: %s", len(pending), ts.describe(pending))
	}
}

// step reduces action on a copy of the state, compares the result with the
// expectation and starts the effect.
func (ts *TestStore[S, A, E]) step(verb string, action A, expect func(*S)) {
	ts.t.Helper()
	next := deepCopy(ts.state)
	effect, err := reduce(ts.reducer, &next, action, ts.env)
	if err != nil {
		ts.t.Errorf("testkit: %s(%T): reducer %v\n%s", verb, action, err, err.Stack)
		return
	}
	want := deepCopy(ts.state)
	if expect != nil {
		expect(&want)
	}
	if diff := cmp.Diff(want, next, ts.compare); diff != "" {
		ts.t.Errorf("testkit: %s(%T): state differs from the expectation (-want +got):\n%s", verb, action, diff)
	}
	ts.state = next
	ts.runner.Start(context.Background(), effect, func(err error) {
		if err != nil {
			ts.mu.Lock()
			ts.failures = append(ts.failures, fmt.Errorf("effect of %T: %w", action, err))
			ts.mu.Unlock()
		}
	})
}

// pending returns the queued actions whose effects were not cancelled,
// dropping the others (as a runtime would); with take it empties the queue.
func (ts *TestStore[S, A, E]) pending(take bool) []A {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.queue = slices.DeleteFunc(ts.queue, func(q queued[A]) bool { return composable.Cancelled(q.ctx) })
	out := make([]A, len(ts.queue))
	for i, q := range ts.queue {
		out[i] = q.action
	}
	if take {
		ts.queue = nil
	}
	return out
}

// next pops the oldest queued action whose effect was not cancelled,
// waiting up to the timeout.
func (ts *TestStore[S, A, E]) next() (A, bool) {
	timer := time.NewTimer(ts.timeout)
	defer timer.Stop()
	for {
		ts.mu.Lock()
		for len(ts.queue) > 0 {
			q := ts.queue[0]
			ts.queue = ts.queue[1:]
			if composable.Cancelled(q.ctx) {
				continue
			}
			ts.mu.Unlock()
			return q.action, true
		}
		ts.mu.Unlock()
		select {
		case <-ts.arrived:
		case <-timer.C:
			var zero A
			return zero, false
		}
	}
}

func (ts *TestStore[S, A, E]) reportFailures() {
	ts.t.Helper()
	ts.mu.Lock()
	failures := ts.failures
	ts.failures = nil
	ts.mu.Unlock()
	for _, err := range failures {
		ts.t.Errorf("testkit: %v", err)
	}
}

func (ts *TestStore[S, A, E]) describe(actions []A) string {
	s := ""
	for i, a := range actions {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%#v", a)
	}
	return s
}

// reduce runs the reducer, turning a panic into an error.
func reduce[S, A, E any](r composable.Reducer[S, A, E], state *S, action A, env E) (effect composable.Effect[A], perr *composable.PanicError) {
	defer func() {
		if v := recover(); v != nil {
			perr = &composable.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return r.Reduce(state, action, env), nil
}

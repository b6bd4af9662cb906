package testkit

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable/saga"
)

// SagaTest drives a saga definition step by step, without actors or
// stores, on a manual clock:
//
//	st := testkit.GivenSaga(t, Checkout, "order-1")
//	st.When(OrderPlaced{...}).ThenDispatches(reserve, charge).ThenSchedules("reservation")
//	st.Reply("charge", ErrDeclined).ThenDispatches(releaseAndCancel...)
//	st.Advance(15 * time.Minute).ThenIgnored() // the timer was cancelled
//
// It is exhaustive: a step whose dispatched commands, armed or cancelled
// timers, or saga events are not asserted fails the test at the next step
// or at cleanup. It is driven by one test goroutine.
type SagaTest[S, E, Env any] struct {
	t       TB
	m       *saga.Machine[S, E, Env]
	inst    saga.Instance[S]
	clock   *ManualClock
	compare cmp.Options
	pending *SagaStep[S, E, Env]
}

// SagaStep is the outcome of one input, awaiting assertions.
type SagaStep[S, E, Env any] struct {
	st                                     *SagaTest[S, E, Env]
	what                                   string
	out                                    saga.Outcome[E]
	events, dispatched, scheduled, cancels bool
}

// GivenSaga starts a test of instance id of def, feeding it the given
// domain events first (their outcomes need no assertions).
func GivenSaga[S, E, Env any](t TB, def saga.Definition[S, E, Env], id string, events ...any) *SagaTest[S, E, Env] {
	t.Helper()
	clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m, err := saga.NewMachine(def, clock, func(s S) S { return deepCopy(s) })
	if err != nil {
		t.Errorf("testkit: saga definition: %v", err)
		return &SagaTest[S, E, Env]{t: t, clock: clock}
	}
	st := &SagaTest[S, E, Env]{t: t, m: m, inst: m.New(id), clock: clock,
		compare: cmp.Options{cmp.Exporter(func(reflect.Type) bool { return true })}}
	for _, e := range events {
		st.step("Given", func() (saga.Instance[S], saga.Outcome[E], error) { return m.Event(st.inst, e, nil) })
		st.pending = nil
	}
	t.Cleanup(st.check)
	return st
}

// Instance returns the instance as it stands.
func (st *SagaTest[S, E, Env]) Instance() saga.Instance[S] { return st.inst }

// Clock returns the test's clock.
func (st *SagaTest[S, E, Env]) Clock() *ManualClock { return st.clock }

// When routes a domain event to the instance.
func (st *SagaTest[S, E, Env]) When(event any) *SagaStep[S, E, Env] {
	st.t.Helper()
	return st.step("When", func() (saga.Instance[S], saga.Outcome[E], error) { return st.m.Event(st.inst, event, nil) })
}

// Reply reports the outcome of the command dispatched for step: nil for
// success, or the failure.
func (st *SagaTest[S, E, Env]) Reply(step string, err error) *SagaStep[S, E, Env] {
	st.t.Helper()
	return st.step("Reply("+step+")", func() (saga.Instance[S], saga.Outcome[E], error) { return st.m.Result(st.inst, step, err) })
}

// Resume resumes the parked instance (see [saga.Saga.Resume]): the inputs
// it deferred are handled, and the commands still pending dispatched
// again.
func (st *SagaTest[S, E, Env]) Resume() *SagaStep[S, E, Env] {
	st.t.Helper()
	return st.step("Resume", func() (saga.Instance[S], saga.Outcome[E], error) { return st.m.Resume(st.inst) })
}

// Advance moves the clock by d, firing the instance's timers that fall
// due, in due order; their outcomes are merged into one step.
func (st *SagaTest[S, E, Env]) Advance(d time.Duration) *SagaStep[S, E, Env] {
	st.t.Helper()
	return st.step("Advance", func() (saga.Instance[S], saga.Outcome[E], error) {
		target := st.clock.Now().Add(d)
		inst, total := st.inst, saga.Outcome[E]{Ignored: true}
		for {
			name, due, ok := nextTimer(inst, target)
			if !ok {
				break
			}
			st.clock.Advance(due.Sub(st.clock.Now()))
			var out saga.Outcome[E]
			var err error
			if inst, out, err = st.m.Timer(inst, name); err != nil {
				return inst, total, err
			}
			total.Events = append(total.Events, out.Events...)
			total.Dispatched = append(total.Dispatched, out.Dispatched...)
			total.Scheduled = append(total.Scheduled, out.Scheduled...)
			total.Cancelled = append(total.Cancelled, out.Cancelled...)
			total.Ignored = total.Ignored && out.Ignored
		}
		st.clock.Advance(target.Sub(st.clock.Now()))
		return inst, total, nil
	})
}

func nextTimer[S any](inst saga.Instance[S], until time.Time) (string, time.Time, bool) {
	names := make([]string, 0, len(inst.Timers))
	for n, due := range inst.Timers {
		if !due.After(until) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", time.Time{}, false
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := inst.Timers[a].Compare(inst.Timers[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return names[0], inst.Timers[names[0]], true
}

func (st *SagaTest[S, E, Env]) step(what string, run func() (saga.Instance[S], saga.Outcome[E], error)) *SagaStep[S, E, Env] {
	st.t.Helper()
	st.check()
	step := &SagaStep[S, E, Env]{st: st, what: what}
	if st.m == nil {
		return step
	}
	inst, out, err := run()
	if err != nil {
		st.t.Errorf("testkit: %s: %v", what, err)
	}
	st.inst, step.out = inst, out
	step.events, step.dispatched = len(out.Events) == 0, len(out.Dispatched) == 0
	step.scheduled, step.cancels = len(out.Scheduled) == 0, len(out.Cancelled) == 0
	st.pending = step
	return step
}

// check fails the test for what the last step did that was not asserted.
func (st *SagaTest[S, E, Env]) check() {
	st.t.Helper()
	s := st.pending
	if s == nil {
		return
	}
	st.pending = nil
	for _, miss := range []struct {
		ok   bool
		what string
	}{{s.events, "saga events"}, {s.dispatched, "dispatched commands"}, {s.scheduled, "armed timers"}, {s.cancels, "cancelled timers"}} {
		if !miss.ok {
			st.t.Errorf("testkit: %s: %s were not asserted: %+v", s.what, miss.what, s.out)
		}
	}
}

// ThenDispatches asserts the commands sent, in order.
func (s *SagaStep[S, E, Env]) ThenDispatches(want ...saga.Dispatched) *SagaStep[S, E, Env] {
	s.st.t.Helper()
	s.dispatched = true
	if diff := cmp.Diff(want, s.out.Dispatched, s.st.compare); diff != "" && (len(want) > 0 || len(s.out.Dispatched) > 0) {
		s.st.t.Errorf("testkit: %s: dispatched commands differ (-want +got):\n%s", s.what, diff)
	}
	return s
}

// ThenSchedules asserts the names of the timers armed, in order.
func (s *SagaStep[S, E, Env]) ThenSchedules(names ...string) *SagaStep[S, E, Env] {
	s.st.t.Helper()
	s.scheduled = true
	got := make([]string, len(s.out.Scheduled))
	for i, t := range s.out.Scheduled {
		got[i] = t.Name
	}
	if !slices.Equal(names, got) {
		s.st.t.Errorf("testkit: %s: armed timers %q, want %q", s.what, got, names)
	}
	return s
}

// ThenCancels asserts the names of the timers disarmed, in order.
func (s *SagaStep[S, E, Env]) ThenCancels(names ...string) *SagaStep[S, E, Env] {
	s.st.t.Helper()
	s.cancels = true
	if !slices.Equal(names, s.out.Cancelled) && (len(names) > 0 || len(s.out.Cancelled) > 0) {
		s.st.t.Errorf("testkit: %s: cancelled timers %q, want %q", s.what, s.out.Cancelled, names)
	}
	return s
}

// ThenEvents asserts the saga's own events, in order.
func (s *SagaStep[S, E, Env]) ThenEvents(want ...E) *SagaStep[S, E, Env] {
	s.st.t.Helper()
	s.events = true
	if diff := cmp.Diff(want, s.out.Events, s.st.compare); diff != "" && (len(want) > 0 || len(s.out.Events) > 0) {
		s.st.t.Errorf("testkit: %s: saga events differ (-want +got):\n%s", s.what, diff)
	}
	return s
}

// ThenIgnored asserts that the input changed nothing.
func (s *SagaStep[S, E, Env]) ThenIgnored() *SagaStep[S, E, Env] {
	s.st.t.Helper()
	if !s.out.Ignored {
		s.st.t.Errorf("testkit: %s: want it ignored, it did %+v", s.what, s.out)
	}
	return s
}

// ThenStatus asserts the instance's status after the step and, when
// reason is not empty, that its reason contains reason.
func (s *SagaStep[S, E, Env]) ThenStatus(status saga.Status, reason string) *SagaStep[S, E, Env] {
	s.st.t.Helper()
	inst := s.st.inst
	if inst.Status != status || !strings.Contains(inst.Reason, reason) {
		s.st.t.Errorf("testkit: %s: status %v (%q), want %v (%q)", s.what, inst.Status, inst.Reason, status, reason)
	}
	return s
}

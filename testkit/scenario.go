package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
)

// Scenario tests an aggregate definition in given / when / then style:
//
//	sc := testkit.Given(t, def, Opened{Owner: "ada"})
//	sc.When(Deposit{Amount: 10}).Then(Deposited{Amount: 10})
//	sc.When(Withdraw{Amount: 99}).ThenError(ErrInsufficient)
//
// Each When runs the command against the state built from the given events
// and the events of earlier successful steps. Scenarios are exhaustive: a
// step whose outcome (events or error) is not asserted, or whose effect is
// not asserted with ThenEffect, fails the test.
//
// [Given] runs the pure functions directly; [GivenLive] runs the same steps
// through a live aggregate actor over an in-memory store, so [Both] can check
// that the two agree. A Scenario is driven by one test goroutine.
type Scenario[S, C, E, Env any] struct {
	t       TB
	def     aggregate.Definition[S, C, E, Env]
	drive   driver[S, C, E]
	compare cmp.Options
	pending *Step[S, C, E, Env]
}

// Step is the outcome of one When, awaiting assertions.
type Step[S, C, E, Env any] struct {
	sc       *Scenario[S, C, E, Env]
	cmd      C
	before   S // state before the step
	events   []E
	effect   composable.Effect[C]
	err      error
	asserted bool
	effectOK bool
}

// driver runs steps either purely or through the runtime.
type driver[S, C, E any] interface {
	given(events []E) error
	when(cmd C) (events []E, effect composable.Effect[C], err error)
	state() (S, error)
	live() bool
}

// Given starts a scenario that runs the definition's pure functions.
func Given[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], events ...E) *Scenario[S, C, E, Env] {
	t.Helper()
	return start(t, def, &pureDriver[S, C, E, Env]{def: def, cur: initial(def, scenarioID)}, events)
}

// WithCompare adds go-cmp options to the scenario's comparisons of events
// and states, e.g. cmpopts.EquateEmpty(). It returns sc.
func (sc *Scenario[S, C, E, Env]) WithCompare(opts ...cmp.Option) *Scenario[S, C, E, Env] {
	sc.compare = append(sc.compare, opts...)
	return sc
}

// GivenLive starts a scenario whose steps go through a live aggregate actor
// (aggregate.Runtime on an actor system, memory store, manual clock); the
// given events are written to the store first. Effects run inside the actor
// and cannot be asserted with ThenEffect; their outcome shows in later
// steps and in State. It hosts the type with default options; see
// GivenLiveWith.
func GivenLive[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], events ...E) *Scenario[S, C, E, Env] {
	t.Helper()
	return GivenLiveWith(t, def, aggregate.Options{}, events...)
}

// GivenLiveWith is GivenLive with the options the type is hosted with, so
// scenarios run under the type's real settings (snapshot frequency, dedup
// window).
func GivenLiveWith[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], opts aggregate.Options, events ...E) *Scenario[S, C, E, Env] {
	t.Helper()
	d, err := newLiveDriver(t, def, opts)
	if err != nil {
		t.Errorf("testkit: start live aggregate: %v", err)
	}
	return start(t, def, d, events)
}

// Both runs fn twice in subtests, "pure" with Given and "live" with
// GivenLive, so that one scenario checks the definition and the runtime.
func Both[S, C, E, Env any](t *testing.T, def aggregate.Definition[S, C, E, Env], given []E, fn func(sc *Scenario[S, C, E, Env])) {
	t.Helper()
	t.Run("pure", func(t *testing.T) { fn(Given(t, def, given...)) })
	t.Run("live", func(t *testing.T) { fn(GivenLive(t, def, given...)) })
}

func start[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], d driver[S, C, E], events []E) *Scenario[S, C, E, Env] {
	t.Helper()
	sc := &Scenario[S, C, E, Env]{t: t, def: def, drive: d, compare: cmp.Options{cmp.Exporter(func(reflect.Type) bool { return true })}}
	if err := d.given(events); err != nil {
		t.Errorf("testkit: given events: %v", err)
	}
	t.Cleanup(sc.check)
	return sc
}

// When handles cmd. The previous step must have been asserted.
func (sc *Scenario[S, C, E, Env]) When(cmd C) *Step[S, C, E, Env] {
	sc.t.Helper()
	sc.check()
	before := sc.State()
	events, effect, err := sc.drive.when(cmd)
	st := &Step[S, C, E, Env]{sc: sc, cmd: cmd, before: before, events: events, effect: effect, err: err, effectOK: effect.IsNone()}
	sc.pending = st
	return st
}

// State returns the aggregate's current state.
func (sc *Scenario[S, C, E, Env]) State() S {
	sc.t.Helper()
	s, err := sc.drive.state()
	if err != nil {
		sc.t.Errorf("testkit: state: %v", err)
	}
	return s
}

// check fails the test for an unasserted step.
func (sc *Scenario[S, C, E, Env]) check() {
	sc.t.Helper()
	st := sc.pending
	if st == nil {
		return
	}
	sc.pending = nil
	if !st.asserted {
		sc.t.Errorf("testkit: When(%T) was not asserted: it produced %d event(s) and error %v", st.cmd, len(st.events), st.err)
	}
	if !st.effectOK {
		sc.t.Errorf("testkit: When(%T) returned an effect that was not asserted with ThenEffect", st.cmd)
	}
}

// Then asserts that the step succeeded with exactly these events, in order.
func (st *Step[S, C, E, Env]) Then(events ...E) *Step[S, C, E, Env] {
	st.sc.t.Helper()
	st.asserted = true
	if st.err != nil {
		st.sc.t.Errorf("testkit: When(%T): want events, got error %v", st.cmd, st.err)
		return st
	}
	if len(events) == 0 && len(st.events) == 0 {
		return st
	}
	if diff := cmp.Diff(events, st.events, st.sc.compare); diff != "" {
		st.sc.t.Errorf("testkit: When(%T): events differ (-want +got):\n%s", st.cmd, diff)
	}
	return st
}

// ThenError asserts that the step failed with an error matching target
// (errors.Is) and wrote nothing.
func (st *Step[S, C, E, Env]) ThenError(target error) *Step[S, C, E, Env] {
	st.sc.t.Helper()
	st.asserted = true
	switch {
	case st.err == nil:
		st.sc.t.Errorf("testkit: When(%T): want error %v, got %d event(s)", st.cmd, target, len(st.events))
	case !errors.Is(st.err, target):
		st.sc.t.Errorf("testkit: When(%T): error %v does not match %v", st.cmd, st.err, target)
	}
	return st
}

// ThenState asserts the state after the step: expect receives a copy of the
// state before the step and must turn it into the expected one.
func (st *Step[S, C, E, Env]) ThenState(expect func(*S)) *Step[S, C, E, Env] {
	st.sc.t.Helper()
	got := st.sc.State()
	want := deepCopy(st.before)
	expect(&want)
	if diff := cmp.Diff(want, got, st.sc.compare); diff != "" {
		st.sc.t.Errorf("testkit: When(%T): state differs (-want +got):\n%s", st.cmd, diff)
	}
	return st
}

// ThenUnchanged asserts that the step left the state as it was.
func (st *Step[S, C, E, Env]) ThenUnchanged() *Step[S, C, E, Env] {
	st.sc.t.Helper()
	return st.ThenState(func(*S) {})
}

// ThenEffect runs the step's effect on a manual clock advanced by advance,
// and asserts that it sends exactly these commands, in order, and then ends.
// A step without an effect asserts that cmds is empty.
func (st *Step[S, C, E, Env]) ThenEffect(advance time.Duration, cmds ...C) *Step[S, C, E, Env] {
	st.sc.t.Helper()
	st.effectOK = true
	if st.sc.drive.live() {
		st.sc.t.Errorf("testkit: ThenEffect is not available on a live scenario")
		return st
	}
	clock := NewManualClock(time.Unix(0, 0))
	sent := make(chan C, 64)
	runner := composable.NewEffectRunner(clock, func(_ context.Context, c C) { sent <- c })
	done := make(chan error, 1)
	runner.Start(context.Background(), st.effect, func(err error) { done <- err })
	clock.Advance(advance)
	var got []C
	timeout := time.After(DefaultTimeout)
wait:
	for {
		select {
		case c := <-sent:
			got = append(got, c)
		case err := <-done:
			if err != nil {
				st.sc.t.Errorf("testkit: When(%T): effect: %v", st.cmd, err)
			}
			break wait
		case <-timeout:
			st.sc.t.Errorf("testkit: When(%T): effect still running after advancing the clock by %v", st.cmd, advance)
			break wait
		}
	}
	runner.Close()
	for len(sent) > 0 {
		got = append(got, <-sent)
	}
	if len(got) != 0 || len(cmds) != 0 {
		if diff := cmp.Diff(cmds, got, st.sc.compare); diff != "" {
			st.sc.t.Errorf("testkit: When(%T): effect commands differ (-want +got):\n%s", st.cmd, diff)
		}
	}
	return st
}

func initial[S, C, E, Env any](def aggregate.Definition[S, C, E, Env], id string) S {
	if def.Initial != nil {
		return def.Initial(id)
	}
	var s S
	return s
}

// scenarioID is the aggregate id scenarios use.
const scenarioID = "scenario"

// pureDriver runs Handle and Apply directly.
type pureDriver[S, C, E, Env any] struct {
	def aggregate.Definition[S, C, E, Env]
	cur S
}

func (d *pureDriver[S, C, E, Env]) given(events []E) error {
	for _, e := range events {
		if err := d.apply(e); err != nil {
			return err
		}
	}
	return nil
}

func (d *pureDriver[S, C, E, Env]) apply(e E) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("Apply(%T) panicked: %v", e, v)
		}
	}()
	d.def.Apply(&d.cur, e)
	return nil
}

func (d *pureDriver[S, C, E, Env]) when(cmd C) (events []E, effect composable.Effect[C], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &composable.PanicError{Value: v}
		}
	}()
	dec, err := d.def.Handle(deepCopy(d.cur), cmd, d.def.Env)
	if err != nil { // a rejection, reported as the runtime does
		return nil, composable.Effect[C]{}, &aggregate.RejectedError{Type: d.def.Type, ID: scenarioID, Err: err}
	}
	next := deepCopy(d.cur)
	for _, e := range dec.Events {
		d.def.Apply(&next, e)
	}
	d.cur = next
	return dec.Events, dec.Effect, nil
}

func (d *pureDriver[S, C, E, Env]) state() (S, error) { return deepCopy(d.cur), nil }
func (d *pureDriver[S, C, E, Env]) live() bool        { return false }

// liveDriver sends steps through an aggregate runtime.
type liveDriver[S, C, E, Env any] struct {
	def   aggregate.Definition[S, C, E, Env]
	store *memory.Store
	typ   *aggregate.Type[S, C, E, Env]
}

func newLiveDriver[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], opts aggregate.Options) (*liveDriver[S, C, E, Env], error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sys := actor.NewSystem(actor.WithLogger(logger))
	store := memory.New()
	rt := aggregate.NewRuntime(sys, store, aggregate.WithClock(NewManualClock(time.Unix(0, 0))), aggregate.WithLogger(logger))
	t.Cleanup(func() {
		_ = rt.Close()
		_ = sys.Close()
	})
	typ, err := aggregate.Register(rt, def, opts)
	if err != nil {
		return nil, err
	}
	return &liveDriver[S, C, E, Env]{def: def, store: store, typ: typ}, nil
}

func (d *liveDriver[S, C, E, Env]) given(events []E) error {
	if len(events) == 0 || d.typ == nil {
		return nil
	}
	data := make([]persistence.EventData, len(events))
	for i, e := range events {
		ed, err := d.def.Events.Marshal(e)
		if err != nil {
			return err
		}
		ed.ID = fmt.Sprintf("given-%d", i)
		data[i] = ed
	}
	_, err := d.store.Append(context.Background(), d.typ.Stream(scenarioID), persistence.NoStream, data...)
	return err
}

func (d *liveDriver[S, C, E, Env]) when(cmd C) ([]E, composable.Effect[C], error) {
	if d.typ == nil {
		return nil, composable.Effect[C]{}, errors.New("testkit: live aggregate did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout*5)
	defer cancel()
	res, err := d.typ.Send(ctx, scenarioID, cmd)
	return res.Events, composable.Effect[C]{}, err
}

func (d *liveDriver[S, C, E, Env]) state() (S, error) {
	if d.typ == nil {
		var zero S
		return zero, errors.New("testkit: live aggregate did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout*5)
	defer cancel()
	res, err := d.typ.State(ctx, scenarioID)
	return res.State, err
}

func (d *liveDriver[S, C, E, Env]) live() bool { return true }

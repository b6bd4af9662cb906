package composable_test

import (
	"context"
	"testing"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/testkit"
)

// A counter that can tick itself later: the child feature.
type counter struct {
	ID    int
	Count int
}

type counterAction interface{ isCounterAction() }

type (
	incr      struct{}
	incrLater struct{}
	stopLater struct{}
)

func (incr) isCounterAction()      {}
func (incrLater) isCounterAction() {}
func (stopLater) isCounterAction() {}

type counterEnv struct{ Delay time.Duration }

type laterID struct{}

var counterReducer = composable.ReducerFunc[counter, counterAction, counterEnv](
	func(s *counter, a counterAction, env counterEnv) composable.Effect[counterAction] {
		switch a.(type) {
		case incr:
			s.Count++
		case incrLater:
			return composable.Cancellable(laterID{}, composable.Delay(env.Delay, composable.Send[counterAction](incr{})))
		case stopLater:
			return composable.Cancel[counterAction](laterID{})
		}
		return composable.None[counterAction]()
	})

// The parent feature: one main counter, a list of counters, and a total.
type app struct {
	Main     counter
	Counters []counter
	Total    int
}

type appAction interface{ isAppAction() }

type (
	mainAction    struct{ Action counterAction }
	elementAction struct {
		ID     int
		Action counterAction
	}
	addCounter    struct{ ID int }
	removeCounter struct{ ID int }
)

func (mainAction) isAppAction()    {}
func (elementAction) isAppAction() {}
func (addCounter) isAppAction()    {}
func (removeCounter) isAppAction() {}

type appEnv struct{ Delay time.Duration }

func appReducer() composable.Reducer[app, appAction, appEnv] {
	toChildEnv := func(e appEnv) counterEnv { return counterEnv(e) }
	core := composable.ReducerFunc[app, appAction, appEnv](func(s *app, a appAction, _ appEnv) composable.Effect[appAction] {
		switch a := a.(type) {
		case addCounter:
			s.Counters = append(s.Counters, counter{ID: a.ID})
		case removeCounter:
			for i := range s.Counters {
				if s.Counters[i].ID == a.ID {
					s.Counters = append(s.Counters[:i], s.Counters[i+1:]...)
					break
				}
			}
		}
		s.Total = s.Main.Count
		for _, c := range s.Counters {
			s.Total += c.Count
		}
		return composable.None[appAction]()
	})
	return composable.Combine(
		composable.Scope(
			func(s *app) *counter { return &s.Main },
			composable.Case[appAction, counterAction]{
				Extract: func(a appAction) (counterAction, bool) {
					m, ok := a.(mainAction)
					return m.Action, ok
				},
				Embed: func(c counterAction) appAction { return mainAction{c} },
			},
			toChildEnv,
			counterReducer,
		),
		composable.ForEach(
			core,
			func(s *app) *[]counter { return &s.Counters },
			func(c *counter) int { return c.ID },
			composable.ElementCase[appAction, int, counterAction]{
				Extract: func(a appAction) (int, counterAction, bool) {
					e, ok := a.(elementAction)
					return e.ID, e.Action, ok
				},
				Embed: func(id int, c counterAction) appAction { return elementAction{id, c} },
			},
			toChildEnv,
			counterReducer,
		),
	)
}

func newApp(t *testing.T) *testkit.TestStore[app, appAction, appEnv] {
	return testkit.NewTestStore(t, appReducer(), app{}, appEnv{Delay: time.Second})
}

func TestScopeRunsChildOnItsStateAndLiftsEffects(t *testing.T) {
	ts := newApp(t)
	ts.Send(mainAction{incr{}}, func(s *app) { s.Main.Count = 1; s.Total = 1 })
	ts.Send(mainAction{incrLater{}}, nil)
	ts.Advance(time.Second)
	ts.Receive(mainAction{incr{}}, func(s *app) { s.Main.Count = 2; s.Total = 2 })
}

func TestScopeIgnoresOtherActions(t *testing.T) {
	ts := newApp(t)
	ts.Send(addCounter{ID: 7}, func(s *app) { s.Counters = []counter{{ID: 7}} })
}

func TestForEachRoutesByIDAndSeesUpdatedElement(t *testing.T) {
	ts := newApp(t)
	ts.Send(addCounter{ID: 1}, func(s *app) { s.Counters = []counter{{ID: 1}} })
	ts.Send(addCounter{ID: 2}, func(s *app) { s.Counters = append(s.Counters, counter{ID: 2}) })
	ts.Send(elementAction{2, incr{}}, func(s *app) { s.Counters[1].Count = 1; s.Total = 1 })
	ts.Send(elementAction{99, incr{}}, nil) // no such element: ignored
}

func TestForEachScopesCancellationPerElement(t *testing.T) {
	ts := newApp(t)
	ts.Send(addCounter{ID: 1}, func(s *app) { s.Counters = []counter{{ID: 1}} })
	ts.Send(addCounter{ID: 2}, func(s *app) { s.Counters = append(s.Counters, counter{ID: 2}) })
	ts.Send(elementAction{1, incrLater{}}, nil)
	ts.Send(elementAction{2, incrLater{}}, nil)
	// Same cancel id, other element: element 1's timer must survive.
	ts.Send(elementAction{2, stopLater{}}, nil)
	ts.Advance(time.Second)
	ts.Receive(elementAction{1, incr{}}, func(s *app) { s.Counters[0].Count = 1; s.Total = 1 })
}

func TestForEachCancelsEffectsOfRemovedElements(t *testing.T) {
	ts := newApp(t)
	ts.Send(addCounter{ID: 1}, func(s *app) { s.Counters = []counter{{ID: 1}} })
	ts.Send(elementAction{1, incrLater{}}, nil)
	ts.Send(removeCounter{ID: 1}, func(s *app) { s.Counters = []counter{} })
	ts.Advance(time.Second)
	// Finish (at cleanup) fails if the removed element's timer still runs or
	// delivers an action.
}

func TestCombineRunsInOrderAndMergesEffects(t *testing.T) {
	type st struct{ Log []string }
	step := func(name string) composable.Reducer[st, string, struct{}] {
		return composable.ReducerFunc[st, string, struct{}](func(s *st, a string, _ struct{}) composable.Effect[string] {
			s.Log = append(s.Log, name+":"+a)
			if a == "go" {
				return composable.Send(name + "-done")
			}
			return composable.None[string]()
		})
	}
	r := composable.Combine(step("a"), step("b"))
	s := st{}
	clock := testkit.NewManualClock(time.Unix(0, 0))
	snk := newSink[string]()
	runner := composable.NewEffectRunner(clock, snk.send)
	defer runner.Close()
	runner.Start(context.Background(), r.Reduce(&s, "go", struct{}{}), nil)
	if want := []string{"a:go", "b:go"}; !equal(s.Log, want) {
		t.Fatalf("log %v, want %v", s.Log, want)
	}
	if got := snk.actions(); !equal(got, []string{"a-done", "b-done"}) {
		t.Fatalf("effects %v", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package main

import (
	"time"

	"github.com/composable-go/composable"
)

// State is the counter's state.
type State struct {
	Count int
	// Scheduled says whether a delayed increment is pending.
	Scheduled bool
}

// Action is everything that can happen to a counter.
type Action interface{ isAction() }

type (
	// Increment adds one.
	Increment struct{}
	// Decrement subtracts one.
	Decrement struct{}
	// Reset sets the count to zero and cancels a pending delayed increment.
	Reset struct{}
	// IncrementLater schedules an increment after Env.Delay; scheduling again
	// restarts the wait.
	IncrementLater struct{}
	// delayedIncrement is sent by the IncrementLater effect.
	delayedIncrement struct{}
)

func (Increment) isAction()        {}
func (Decrement) isAction()        {}
func (Reset) isAction()            {}
func (IncrementLater) isAction()   {}
func (delayedIncrement) isAction() {}

// Env holds the counter's dependencies.
type Env struct {
	Delay time.Duration
}

// laterID names the delayed increment so it can be cancelled.
type laterID struct{}

// Reducer is the counter's pure logic.
var Reducer = composable.ReducerFunc[State, Action, Env](func(s *State, a Action, env Env) composable.Effect[Action] {
	switch a.(type) {
	case Increment:
		s.Count++
	case Decrement:
		s.Count--
	case Reset:
		s.Count, s.Scheduled = 0, false
		return composable.Cancel[Action](laterID{})
	case IncrementLater:
		s.Scheduled = true
		return composable.CancelInFlight(laterID{},
			composable.Delay(env.Delay, composable.Send[Action](delayedIncrement{})))
	case delayedIncrement:
		// A timer that lost a race with Reset is ignored: the state, not
		// the timer, says whether an increment is due.
		if s.Scheduled {
			s.Count++
			s.Scheduled = false
		}
	}
	return composable.None[Action]()
})

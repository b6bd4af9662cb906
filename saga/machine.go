package saga

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// Machine runs a saga definition's logic without actors, stores or buses:
// it feeds inputs to an [Instance] and reports what the saga decided. Test
// harnesses (see package testkit) build on it; it applies the same rules as
// the runtime — strict routing, ignored late timers and duplicate outcomes,
// compensation order, failure policies.
type Machine[S, E, Env any] struct {
	s *Saga[S, E, Env]
}

// Outcome is what one input led to.
type Outcome[E any] struct {
	// Events are the saga's own events recorded.
	Events []E
	// Dispatched are the commands sent, compensations included.
	Dispatched []Dispatched
	// Scheduled are the timers armed; Cancelled the timers disarmed.
	Scheduled []Scheduled
	Cancelled []string
	// Ignored reports that the input changed nothing (a duplicate, a late
	// timer, an event strict routing refused).
	Ignored bool
}

// Dispatched is a command the saga sent.
type Dispatched struct {
	Step, Aggregate, ID string
	Command             any
}

// Scheduled is a timer the saga armed, with its due time.
type Scheduled struct {
	Name string
	Due  time.Time
}

// NewMachine returns a machine for def whose timers count from clock.
func NewMachine[S, E, Env any](def Definition[S, E, Env], clock composable.Clock, cloneState func(S) S) (*Machine[S, E, Env], error) {
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if def.Initial == nil {
		def.Initial = func(string) S { var s S; return s }
	}
	if cloneState == nil {
		cloneState = func(s S) S { return s }
	}
	return &Machine[S, E, Env]{s: &Saga[S, E, Env]{
		def: def, clock: clock, cloneState: cloneState,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}}, nil
}

// New returns the instance id before any input.
func (m *Machine[S, E, Env]) New(id string) Instance[S] {
	return Instance[S]{ID: id, State: m.s.def.Initial(id)}
}

// Event routes a domain event to inst, as the runtime would: events for
// other instances or that Route ignores change nothing.
func (m *Machine[S, E, Env]) Event(inst Instance[S], ev any, metadata map[string]string) (Instance[S], Outcome[E], error) {
	route := m.s.def.Route(ev, metadata)
	if route.Mode == Ignore || route.ID != inst.ID {
		return inst, Outcome[E]{Ignored: true}, nil
	}
	data, err := m.s.def.Events.Marshal(ev)
	if err != nil {
		return inst, Outcome[E]{}, err
	}
	data.Metadata = metadata
	return m.feed(inst, input{Event: &persistence.RecordedEvent{EventData: data}, Mode: route.Mode})
}

// Result reports the outcome of the pending command of step: err nil for
// success; an error matching [aggregate.ErrRejected] (a
// [*aggregate.RejectedError], say) is a rejection.
func (m *Machine[S, E, Env]) Result(inst Instance[S], step string, err error) (Instance[S], Outcome[E], error) {
	r := resultOf(step, err)
	return m.feed(inst, input{Result: &r})
}

// Timer fires the pending timer name (at its recorded due time).
func (m *Machine[S, E, Env]) Timer(inst Instance[S], name string) (Instance[S], Outcome[E], error) {
	return m.feed(inst, input{Timer: name, Due: inst.Timers[name]})
}

// Resume resumes a parked instance, as [Saga.Resume] does: the inputs it
// deferred are handled, and the commands still pending are dispatched
// again (reported in the outcome's Dispatched). It returns an error
// matching ErrNotParked when inst is not parked.
func (m *Machine[S, E, Env]) Resume(inst Instance[S]) (Instance[S], Outcome[E], error) {
	return m.feed(inst, input{Unpark: true})
}

func (m *Machine[S, E, Env]) feed(inst Instance[S], in input) (Instance[S], Outcome[E], error) {
	d, err := m.s.handle(inst, in, struct{}{})
	if err != nil {
		return inst, Outcome[E]{}, err
	}
	out := Outcome[E]{Ignored: len(d.Events) == 0}
	next := inst.clone(m.s.cloneState)
	for _, e := range d.Events {
		apply(&m.s.def, &next, e)
		switch e := e.(type) {
		case evRecorded:
			ev, err := persistence.Decode[E](m.s.def.Events, persistence.EventData{Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data})
			if err != nil {
				return inst, out, err
			}
			out.Events = append(out.Events, ev)
		case evDispatched:
			cmd, err := m.s.def.Commands.Unmarshal(persistence.EventData{Type: e.Command.Type, SchemaVersion: e.Command.SchemaVersion, Data: e.Command.Data})
			if err != nil {
				return inst, out, fmt.Errorf("saga: decode dispatched command: %w", err)
			}
			out.Dispatched = append(out.Dispatched, Dispatched{Step: e.Command.Step, Aggregate: e.Command.Aggregate, ID: e.Command.ID, Command: cmd})
		case evResumed: // dispatched again
			p := next.Pending[e.Step]
			cmd, err := m.s.def.Commands.Unmarshal(persistence.EventData{Type: p.Type, SchemaVersion: p.SchemaVersion, Data: p.Data})
			if err != nil {
				return inst, out, fmt.Errorf("saga: decode dispatched command: %w", err)
			}
			out.Dispatched = append(out.Dispatched, Dispatched{Step: p.Step, Aggregate: p.Aggregate, ID: p.ID, Command: cmd})
		case evTimerScheduled:
			out.Scheduled = append(out.Scheduled, Scheduled(e))
		case evTimerCancelled:
			out.Cancelled = append(out.Cancelled, e.Name)
		}
	}
	if next.Status == Parked {
		out.Dispatched = nil // pending, not sent, until resumed
	}
	return next, out, nil
}

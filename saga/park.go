package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// Supervision. A saga is the supervisor of the steps it dispatches: a step
// that fails transiently is retried with back-off (Command.Retries), and a
// failure that remains follows the step's FailurePolicy; a failure of the
// saga's own code follows the definition's ErrorPolicy. Both can park the
// instance: it stops where it is, recorded in its stream — status Parked,
// the reason, the step that failed (still pending) or the input whose
// handling failed — and marked in the timer table so that Parked lists it.
// While parked, the instance defers every input (domain events, outcomes
// of commands still in flight, timer firings) by recording it, and
// dispatches nothing: the guards of its pending commands are disarmed, and
// commands a decision dispatches as it parks stay pending until resumed.
// Resume handles the deferred inputs in order, in one decision, and
// dispatches again what is still pending.

// ErrNotParked is matched by Resume's error when the instance is not
// parked.
var ErrNotParked = errors.New("saga: instance not parked")

// whileParked defers the inputs that reach a parked instance, and resumes
// it when asked to.
func (s *Saga[S, E, Env]) whileParked(inst Instance[S], in input) decision {
	switch {
	case in.Unpark:
		return s.unpark(inst)
	case in.Resume != "":
		return decision{} // a guard that raced the parking: Resume dispatches
	case in.Timer != "":
		if due, ok := inst.Timers[in.Timer]; !ok || !due.Equal(in.Due) {
			return decision{} // cancelled or re-armed
		}
	case in.Result != nil:
		if _, ok := inst.Pending[in.Result.Step]; !ok {
			return decision{} // a duplicate outcome
		}
	}
	return decision{Events: []event{evDeferred{Input: in}}}
}

// unpark resumes a parked instance: it returns to the status it was parked
// in, handles the inputs it deferred, in order, and dispatches again the
// commands still pending, guarded anew. An input that parks it again keeps
// the rest deferred.
func (s *Saga[S, E, Env]) unpark(inst Instance[S]) decision {
	deferred := inst.Parked.deferred
	out := decision{Events: []event{evUnparked{}}}
	var fx []composable.Effect[input]
	cur := s.simulate(inst, out.Events)
	// The timers that fired while parked are pending again, for the inputs
	// handled before their firing: one that cancels or re-arms a timer
	// does so before it fires, as it would have had the instance not
	// parked. (Their rows are gone; only cur, a scratch copy, holds them.)
	for _, in := range deferred {
		if in.Timer != "" {
			if cur.Timers == nil {
				cur.Timers = map[string]time.Time{}
			}
			cur.Timers[in.Timer] = in.Due
		}
	}
	for i, in := range deferred {
		d, err := s.handle(cur, in, struct{}{})
		if err != nil { // only a resumption of an instance not parked fails
			continue
		}
		out.Events = append(out.Events, d.Events...)
		out.Timers = append(out.Timers, d.Timers...)
		fx = append(fx, d.Effect)
		for _, e := range d.Events {
			apply(&s.def, &cur, e)
		}
		if cur.Status == Parked {
			// Parked again: the rest waits, and so do the commands the
			// inputs before dispatched — they are pending, for the next
			// Resume to dispatch.
			for _, rest := range deferred[i+1:] {
				out.Events = append(out.Events, evDeferred{Input: rest})
			}
			return out
		}
	}
	if cur.Status == Running || cur.Status == Compensating {
		dispatched := map[string]bool{}
		for _, e := range out.Events {
			if e, ok := e.(evDispatched); ok {
				dispatched[e.Command.Step] = true
			}
		}
		for step, p := range cur.Pending {
			if dispatched[step] {
				continue
			}
			ev := evResumed{Step: step, Guard: s.guardDue()}
			out.Events = append(out.Events, ev)
			out.Timers = append(out.Timers, aggregate.Timer{Name: guardTimer + step, Due: ev.Guard})
			// The failed step's outcome was handled (it parked the
			// instance): dispatch it whatever the counter says. Another
			// step still dispatching in this process will report.
			if step == inst.Parked.Step || !s.dispatching(inst.ID, step) {
				fx = append(fx, s.dispatchEffect(inst.ID, p))
			}
		}
	}
	out.Timers = append(out.Timers, aggregate.Timer{Name: parkedMark, Cancel: true})
	out.Effect = composable.Merge(fx...)
	return out
}

// Resume resumes a parked instance — after the cause of its failure was
// fixed: it returns to the status it was parked in, handles the inputs
// deferred while it was parked (the one whose handling failed first), and
// dispatches again the commands still pending, the failed step's with its
// retries anew. It returns an error matching ErrNotParked (and
// [aggregate.ErrRejected]) when the instance is not parked.
func (s *Saga[S, E, Env]) Resume(ctx context.Context, id string) error {
	_, err := s.typ.Send(ctx, id, input{Unpark: true})
	return err
}

// Parked returns the ids of up to limit parked instances, in id order,
// after the id after ("" for the first page). It reads the store's marks
// of parked instances, not the instances: its cost grows with the parked
// instances, not with those running or ended. [Saga.Instance] tells why
// one is parked.
func (s *Saga[S, E, Env]) Parked(ctx context.Context, after string, limit int) ([]string, error) {
	ts, ok := s.store.(persistence.TimerStore)
	if !ok {
		return nil, fmt.Errorf("saga %s: the store keeps no timers", s.def.Type)
	}
	marks, err := ts.Marks(ctx, "saga-"+s.def.Type, parkedMark, after, limit)
	if err != nil {
		return nil, fmt.Errorf("saga %s: parked instances: %w", s.def.Type, err)
	}
	ids := make([]string, len(marks))
	for i, m := range marks {
		ids[i] = m.ID
	}
	return ids, nil
}

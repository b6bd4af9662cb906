package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// input is the command of a saga instance's underlying aggregate: a routed
// domain event, a dispatched command's outcome, a timer firing, or the
// guard of a pending command firing (Resume: its step).
type input struct {
	Event  *persistence.RecordedEvent `json:",omitempty"`
	Mode   RouteMode                  `json:",omitempty"`
	Result *evResulted                `json:",omitempty"`
	Timer  string                     `json:",omitempty"`
	Resume string                     `json:",omitempty"`
	Due    time.Time                  `json:",omitzero"`
	// Unpark resumes a parked instance (Saga.Resume).
	Unpark bool `json:",omitempty"`
	// Upgrade arms the rows of an instance started before timer rows
	// (Saga.Upgrade).
	Upgrade bool `json:",omitempty"`
}

type decision = aggregate.Decision[input, event]

// The instance's durable timers, in the store's timer table: the saga's
// own, and one guard per pending command, which resumes the command if no
// outcome came in time — after a crash, say — so that nothing needs to
// scan instances on start-up.
const (
	userTimer  = "timer:"
	guardTimer = "pending:"
	// parkedMark marks a parked instance: a timer due never, by which
	// Saga.Parked lists them.
	parkedMark = "parked"
)

// dispatchKey names a pending command's dispatch effect, so that a
// resumed dispatch replaces one still in flight.
type dispatchKey struct{ step string }

// onTimer is the instance aggregate's OnTimer: the firing of a durable
// timer becomes an input.
func onTimer(name string, due time.Time) input {
	if step, ok := strings.CutPrefix(name, guardTimer); ok {
		return input{Resume: step, Due: due}
	}
	return input{Timer: strings.TrimPrefix(name, userTimer), Due: due}
}

// handle is the underlying aggregate's command handler: it records what
// the framework tracks, calls the saga's Handle, and turns its decision into
// events and effects.
func (s *Saga[S, E, Env]) handle(inst Instance[S], in input, _ struct{}) (decision, error) {
	switch {
	case in.Upgrade:
		return s.upgrade(inst), nil
	case inst.Status == Parked:
		return s.whileParked(inst, in), nil
	case in.Unpark:
		return decision{}, fmt.Errorf("%w: it is %s", ErrNotParked, inst.Status)
	case in.Event != nil:
		switch {
		case inst.Ended() || inst.Status == Compensating:
			return decision{}, nil // too late: nothing to do
		case in.Mode == Start && inst.Status != NotStarted:
			s.logger.Info("saga: start event for a running instance ignored", "saga", s.def.Type, "id", inst.ID, "event", in.Event.ID)
			return decision{}, nil
		case in.Mode == Continue && inst.Status == NotStarted:
			s.logger.Info("saga: event for an instance that has not started ignored", "saga", s.def.Type, "id", inst.ID, "event", in.Event.ID)
			return decision{}, nil
		}
		var pre []event
		if inst.Status == NotStarted {
			pre = append(pre, evStarted{})
		}
		ev, err := s.def.Events.Unmarshal(in.Event.EventData)
		if err != nil {
			return s.failed(inst, pre, in, fmt.Errorf("decode %s: %w", in.Event.ID, err)), nil
		}
		return s.decide(inst, pre, in, Input{Event: ev, Recorded: in.Event}), nil
	case in.Timer != "":
		due, ok := inst.Timers[in.Timer]
		if !ok || !due.Equal(in.Due) || inst.Status != Running {
			return decision{}, nil // cancelled, re-armed, fired already, or too late
		}
		return s.decide(inst, []event{evTimerFired{Name: in.Timer}}, in, Input{Timer: in.Timer}), nil
	case in.Resume != "":
		p, ok := inst.Pending[in.Resume]
		if !ok || inst.Ended() {
			return decision{}, nil // its outcome came meanwhile
		}
		// No outcome within the guard's time: guard it again, and dispatch
		// it again (the command id makes that idempotent) unless this
		// process is still at it — a dispatch restarted would restart its
		// retries, and never run out of them. (Asking the process is not
		// pure; either answer leads to the same outcome.)
		ev := evResumed{Step: p.Step, Guard: s.guardDue()}
		d := decision{Events: []event{ev}, Timers: []aggregate.Timer{{Name: guardTimer + p.Step, Due: ev.Guard}}}
		if !s.dispatching(inst.ID, p.Step) {
			d.Effect = s.dispatchEffect(inst.ID, p)
		}
		return d, nil
	case in.Result != nil:
		p, ok := inst.Pending[in.Result.Step]
		if !ok {
			return decision{}, nil // a duplicate outcome
		}
		res := *in.Result
		if inst.Status == Compensating {
			n := len(inst.Compensations)
			isCompensation := n > 0 && CompensationStep(inst.Compensations[n-1].Step) == res.Step
			if isCompensation && res.Error != "" {
				reason := fmt.Sprintf("%s; then %s failed: %s", inst.Reason, res.Step, res.Error)
				if p.OnFailure == Park {
					return s.park(inst, nil, reason, res.Step, nil), nil
				}
				return s.end(inst, []event{res}, Failed, reason), nil
			}
			if !isCompensation && res.Error != "" {
				// A step dispatched before (or with) the decision to
				// compensate failed: nothing of it to undo.
				s.logger.Warn("saga: step failed while compensating", "saga", s.def.Type, "id", inst.ID, "step", res.Step, "error", res.Error)
			}
			// A compensation done, or a step that finished late: go on.
			return s.settle(inst, []event{res}), nil
		}
		result := Result{Step: res.Step, Version: res.Version, Position: res.Position}
		if res.Error != "" {
			reason := fmt.Sprintf("step %s failed: %s", res.Step, res.Error)
			switch p.OnFailure {
			case Stop:
				return s.end(inst, []event{res}, Failed, reason), nil
			case Skip:
				res.Skipped = true
			case Compensate:
				return s.compensate(inst, []event{res}, reason), nil
			case Park:
				return s.park(inst, nil, reason, res.Step, nil), nil
			default:
				result.Err = res.err()
			}
		}
		return s.decide(inst, []event{res}, in, Input{Result: &result}), nil
	}
	return decision{}, nil
}

// decide calls the saga's Handle with in, made of the instance's input
// raw, and translates its decision. An error or a panic from Handle is
// handled by the definition's OnError policy.
func (s *Saga[S, E, Env]) decide(inst Instance[S], pre []event, raw input, in Input) decision {
	d, err := s.callHandle(inst.State, in)
	if err != nil {
		return s.failed(inst, pre, raw, err)
	}
	out, err := s.translate(inst, pre, d)
	if err != nil {
		return s.failed(inst, pre, raw, err)
	}
	return out
}

func (s *Saga[S, E, Env]) callHandle(state S, in Input) (d Decision[E], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic in Handle: %v\n%s", v, debug.Stack())
		}
	}()
	return s.def.Handle(state, in, s.def.Env)
}

// failed handles an unexpected failure of the saga's own code on the
// input raw — logged, never a silent rollback — as the definition's
// OnError says: the instance fails, compensates, or parks (without pre,
// which raw's handling again will record).
func (s *Saga[S, E, Env]) failed(inst Instance[S], pre []event, raw input, err error) decision {
	reason := "unexpected: " + err.Error()
	switch s.def.OnError {
	case ParkOnError:
		return s.park(inst, nil, reason, "", &raw)
	case CompensateOnError:
		s.logger.Error("saga: failed unexpectedly; compensating", "saga", s.def.Type, "id", inst.ID, "error", err)
		return s.compensate(inst, pre, reason)
	default:
		s.logger.Error("saga: failed unexpectedly", "saga", s.def.Type, "id", inst.ID, "error", err)
		return s.end(inst, pre, Failed, reason)
	}
}

func (s *Saga[S, E, Env]) end(inst Instance[S], pre []event, status Status, reason string) decision {
	return s.settle(inst, append(pre, evEnded{Status: status, Reason: reason}))
}

func (s *Saga[S, E, Env]) compensate(inst Instance[S], pre []event, reason string) decision {
	return s.settle(inst, append(pre, evCompensating{Reason: reason}))
}

// park parks the instance after pre: step is the failed step that stays
// pending, raw the input to handle again on resumption (or nil).
func (s *Saga[S, E, Env]) park(inst Instance[S], pre []event, reason, step string, raw *input) decision {
	s.logger.Error("saga: parked", "saga", s.def.Type, "id", inst.ID, "step", step, "reason", reason)
	from := s.simulate(inst, pre).Status
	return s.settle(inst, append(pre, evParked{Reason: reason, Step: step, From: from, Since: s.clock.Now().Round(0), Input: raw}))
}

// settle translates framework events alone, which cannot fail to encode.
func (s *Saga[S, E, Env]) settle(inst Instance[S], events []event) decision {
	d, err := s.translate(inst, events, Decision[E]{})
	if err != nil {
		panic(err) // unreachable: only the saga's own events and commands are encoded
	}
	return d
}

// translate turns a decision into the instance's events and effects. It
// fails when the decision's events or commands cannot be encoded.
func (s *Saga[S, E, Env]) translate(inst Instance[S], events []event, d Decision[E]) (decision, error) {
	for _, e := range d.Events {
		data, err := s.def.Events.Marshal(e)
		if err != nil {
			return decision{}, fmt.Errorf("encode event %T: %w", e, err)
		}
		events = append(events, evRecorded{Type: data.Type, SchemaVersion: data.SchemaVersion, Data: data.Data})
	}
	for _, c := range d.Dispatch {
		p, err := s.encode(c)
		if err != nil {
			return decision{}, err
		}
		events = append(events, evDispatched{Command: p, Guard: s.guardDue()})
	}
	now := s.clock.Now().Round(0) // as stored: no monotonic reading
	for _, t := range d.Schedule {
		events = append(events, evTimerScheduled{Name: t.Name, Due: now.Add(t.After)})
	}
	// A timer is cancelled if it is pending after what came before — not
	// one that just fired, nor one never armed.
	current := s.simulate(inst, events)
	for _, name := range d.Cancel {
		if _, ok := current.Timers[name]; ok {
			events = append(events, evTimerCancelled{Name: name})
		}
	}
	switch {
	case d.Fail != "":
		events = append(events, evEnded{Status: Failed, Reason: d.Fail})
	case d.Compensate != "":
		events = append(events, evCompensating{Reason: d.Compensate})
	case d.Complete:
		events = append(events, evEnded{Status: Completed})
	case d.Park != "":
		s.logger.Error("saga: parked by its Handle", "saga", s.def.Type, "id", inst.ID, "reason", d.Park)
		events = append(events, evParked{Reason: d.Park, From: current.Status, Since: now})
	}
	// While compensating, dispatch the newest compensation not yet sent,
	// or end when none is left.
	next := s.simulate(inst, events)
	if next.Status == Compensating && len(next.Pending) == 0 {
		if n := len(next.Compensations); n > 0 {
			c := next.Compensations[n-1]
			c.Step = CompensationStep(c.Step)
			events = append(events, evDispatched{Command: c, Guard: s.guardDue()})
		} else {
			events = append(events, evEnded{Status: Failed, Reason: next.Reason})
		}
		next = s.simulate(inst, events)
	}
	return decision{Events: events, Effect: s.effects(inst, next, events), Timers: timers(inst, next, events)}, nil
}

// guardDue is when a command dispatched now is resumed if no outcome came.
func (s *Saga[S, E, Env]) guardDue() time.Time {
	return s.clock.Now().Round(0).Add(s.resumeAfter)
}

// timers turns what events record into the instance's durable timers: the
// saga's timers, and a guard per dispatched command until its outcome. An
// instance that ends disarms all of them.
func timers[S any](before, after Instance[S], events []event) []aggregate.Timer {
	var out []aggregate.Timer
	for _, e := range events {
		switch e := e.(type) {
		case evTimerScheduled:
			out = append(out, aggregate.Timer{Name: userTimer + e.Name, Due: e.Due})
		case evTimerCancelled:
			out = append(out, aggregate.Timer{Name: userTimer + e.Name, Cancel: true})
		case evDispatched:
			out = append(out, aggregate.Timer{Name: guardTimer + e.Command.Step, Due: e.Guard})
		case evResulted:
			out = append(out, aggregate.Timer{Name: guardTimer + e.Step, Cancel: true})
		}
	}
	if after.Status == Parked {
		// No guard dispatches a command again while parked: Resume does.
		// The mark lists the instance.
		for _, pending := range []map[string]Pending{before.Pending, after.Pending} {
			for step := range pending {
				out = append(out, aggregate.Timer{Name: guardTimer + step, Cancel: true})
			}
		}
		out = append(out, aggregate.Timer{Name: parkedMark, Due: persistence.Never})
	}
	if after.Ended() && !before.Ended() {
		// Disarm everything pending before, and everything armed on the
		// way to the end.
		for name := range before.Timers {
			out = append(out, aggregate.Timer{Name: userTimer + name, Cancel: true})
		}
		for step := range before.Pending {
			out = append(out, aggregate.Timer{Name: guardTimer + step, Cancel: true})
		}
		for _, t := range out {
			if !t.Cancel {
				out = append(out, aggregate.Timer{Name: t.Name, Cancel: true})
			}
		}
	}
	return out
}

func (s *Saga[S, E, Env]) simulate(inst Instance[S], events []event) Instance[S] {
	next := inst.clone(s.cloneState)
	for _, e := range events {
		apply(&s.def, &next, e)
	}
	return next
}

// effects dispatches the commands that events record, and tells Wait of
// an end. Timers are durable (see timers), not effects.
func (s *Saga[S, E, Env]) effects(before, after Instance[S], events []event) composable.Effect[input] {
	var fx []composable.Effect[input]
	for _, e := range events {
		if e, ok := e.(evDispatched); ok && after.Status != Parked { // parked: pending until resumed
			fx = append(fx, s.dispatchEffect(after.ID, e.Command))
		}
	}
	if (after.Ended() && !before.Ended()) || (after.Status == Parked && before.Status != Parked) {
		fx = append(fx, s.endEffect(after.ID))
	}
	return composable.Merge(fx...)
}

// onActivate dispatches, from the state, the commands still awaiting their
// result when the instance was last active (their ids make that
// idempotent). Timers need nothing: the scheduler fires them.
func (s *Saga[S, E, Env]) onActivate(inst Instance[S], _ struct{}) composable.Effect[input] {
	if inst.Status != Running && inst.Status != Compensating {
		return composable.None[input]()
	}
	var fx []composable.Effect[input]
	for _, p := range inst.Pending {
		fx = append(fx, s.dispatchEffect(inst.ID, p))
	}
	return composable.Merge(fx...)
}

func (s *Saga[S, E, Env]) dispatchEffect(sagaID string, p Pending) composable.Effect[input] {
	return composable.CancelInFlight(dispatchKey{p.Step}, composable.Run(func(ctx context.Context, send func(input)) {
		key := sagaID + "\x00" + p.Step
		s.inflight.Add(key, 1)
		// Done before the outcome is sent: once it is handled, a new
		// dispatch of the step (on resumption, say) must not be skipped.
		// Done once the outcome is sent: until the instance handles it, a
		// resumption must not dispatch the step again (a rejected command
		// may succeed the second time, and that success would go
		// unnoticed). Resume dispatches the step that parked the instance
		// whatever this says: its outcome was handled.
		defer s.inflight.Add(key, -1)
		if res, ok := s.dispatch(ctx, sagaID, p); ok {
			send(input{Result: &res})
		}
	}))
}

// dispatching reports whether a dispatch of step runs in this process.
func (s *Saga[S, E, Env]) dispatching(sagaID, step string) bool {
	return s.inflight.Get(sagaID+"\x00"+step) > 0
}

// counters counts, by key, the dispatches running in this process. It is
// safe for concurrent use.
type counters struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counters) Add(key string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key] += d
	if c.n[key] == 0 {
		delete(c.n, key)
	}
}

func (c *counters) Get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// endEffect wakes the waiters of an instance whose end (or parking) is
// stored.
func (s *Saga[S, E, Env]) endEffect(id string) composable.Effect[input] {
	return composable.Run(func(context.Context, func(input)) { s.ended(id) })
}

// encode records a command for dispatch.
func (s *Saga[S, E, Env]) encode(c Command) (Pending, error) {
	data, err := s.def.Commands.Marshal(c.Command)
	if err != nil {
		return Pending{}, fmt.Errorf("encode command %T of step %s: %w", c.Command, c.Step, err)
	}
	if c.OnFailure < Report || c.OnFailure > Park {
		return Pending{}, fmt.Errorf("step %s: OnFailure %d is not a FailurePolicy", c.Step, c.OnFailure)
	}
	retries := c.Retries
	if retries == 0 {
		retries = 5
	}
	p := Pending{Step: c.Step, Aggregate: c.Aggregate, ID: c.ID, Type: data.Type, SchemaVersion: data.SchemaVersion,
		Data: data.Data, Retries: max(retries, 0), OnFailure: c.OnFailure}
	if c.Compensation != nil {
		comp, err := s.encode(*c.Compensation)
		if err != nil {
			return Pending{}, err
		}
		p.Compensation = &comp
	}
	return p, nil
}

// dispatch sends a pending command, retrying transient failures with
// back-off on the runtime's clock, and returns its outcome. It reports no
// outcome (false) when the instance is stopping or the runtime shutting
// down: the command stays pending and is dispatched again when the
// instance next becomes active.
func (s *Saga[S, E, Env]) dispatch(ctx context.Context, sagaID string, p Pending) (evResulted, bool) {
	cmd, err := s.def.Commands.Unmarshal(persistence.EventData{Type: p.Type, SchemaVersion: p.SchemaVersion, Data: p.Data})
	if err != nil {
		return evResulted{Step: p.Step, Error: "decode command: " + err.Error()}, true
	}
	id := CommandID(s.def.Type, sagaID, p.Step)
	md := map[string]string{persistence.MetadataCorrelationID: sagaID, persistence.MetadataCausationID: id}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		reply, err := s.rt.Send(ctx, p.Aggregate, p.ID, cmd, aggregate.WithCommandID(id), aggregate.WithMetadata(md))
		if err == nil {
			return evResulted{Step: p.Step, Version: reply.Version, Position: reply.Position}, true
		}
		if ctx.Err() != nil || errors.Is(err, aggregate.ErrShuttingDown) {
			return evResulted{}, false
		}
		if !transient(err) || attempt >= p.Retries {
			return resultOf(p.Step, err), true
		}
		s.logger.Warn("saga: command failed; retrying", slog.String("saga", s.def.Type), slog.String("id", sagaID),
			slog.String("step", p.Step), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return evResulted{}, false
		case <-s.clock.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// transient reports failures a retry may cure. A rejection never is, even
// one whose handler error wraps an infrastructure error.
func transient(err error) bool {
	if errors.Is(err, aggregate.ErrRejected) || persistence.FaultOf(err) != persistence.FaultInfrastructure {
		return false
	}
	return errors.Is(err, aggregate.ErrUnavailable) || errors.Is(err, aggregate.ErrOverloaded) ||
		errors.Is(err, aggregate.ErrTooManyAttempts) || errors.Is(err, context.DeadlineExceeded)
}

// CommandID is the command id a saga instance sends with the command of a
// step: deterministic, so a re-dispatch is deduplicated by the aggregate.
func CommandID(sagaType, sagaID, step string) string {
	return fmt.Sprintf("saga/%s/%s/%s", sagaType, sagaID, step)
}

// CompensationStep is the step name under which the compensation of step
// is dispatched (and reported).
func CompensationStep(step string) string { return "compensate:" + step }

// resultOf records a command's failure. A rejection keeps only the
// handler's message, and is marked so that Handle can tell it apart.
func resultOf(step string, err error) evResulted {
	r := evResulted{Step: step}
	if err == nil {
		return r
	}
	r.Error = err.Error()
	var rej *aggregate.RejectedError
	switch {
	case errors.As(err, &rej) && rej.Err != nil:
		r.Rejected, r.Error = true, rej.Err.Error()
	case errors.Is(err, aggregate.ErrRejected):
		r.Rejected = true
	}
	return r
}

// err rebuilds the failure Handle sees.
func (r evResulted) err() error {
	if r.Rejected {
		return rejection(r.Error)
	}
	return errors.New(r.Error)
}

// rejection is a stored business rejection: it matches
// [aggregate.ErrRejected].
type rejection string

func (r rejection) Error() string        { return string(r) }
func (r rejection) Is(target error) bool { return target == aggregate.ErrRejected }

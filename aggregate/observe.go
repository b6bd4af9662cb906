package aggregate

import (
	"time"

	"github.com/composable-go/composable/persistence"
)

// Observer is told what the aggregates of a runtime it is attached to
// ([WithObserver]) do: every command an aggregate answered — not those
// refused before reaching one (ErrOverloaded, ErrShuttingDown) — with its
// outcome, the events it appended and the net effect on its durable
// timers, and every durable timer fired. Test probes (testkit.RuntimeProbe) implement
// it; so can telemetry. Its methods are called on the runtime's
// goroutines, concurrently, after the outcome is final; they must return
// quickly and must not call the runtime.
type Observer interface {
	Handled(Handled)
	TimerFired(TimerFiring)
}

// Handled describes one command an aggregate answered (state queries are
// not reported).
type Handled struct {
	// Type and ID name the aggregate.
	Type, ID string
	// Command is the command, CommandID its id ("" if it had none).
	Command   any
	CommandID string
	// Events are the events the command appended, in order: none for a
	// rejection, a failure, or a command that changed nothing. For a
	// duplicate they are the original command's.
	Events []any
	// Timers are the net changes the command made to its durable timers
	// (one per name; none for a duplicate).
	Timers    []Timer
	Duplicate bool
	// Err is the command's failure, or nil.
	Err error
}

// TimerFiring describes one durable timer the scheduler fired.
type TimerFiring struct {
	Type, ID, Name string
	Due            time.Time
	// Err is nil once the aggregate took the firing (or refused it for
	// good); otherwise the firing is retried later.
	Err error
}

// WithObserver attaches o to the runtime.
func WithObserver(o Observer) RuntimeOption { return func(r *Runtime) { r.observer = o } }

// observeHandled reports a command's outcome to the runtime's observer.
func (h *host[S, C, E, Env]) observeHandled(m *envelope[S, C, E], res Result[S, E], err error, timers []persistence.TimerChange) {
	obs := h.rt.observer
	if obs == nil || m.query {
		return
	}
	hd := Handled{Type: h.def.Type, ID: m.id, Command: m.cmd, CommandID: m.commandID, Duplicate: res.Duplicate, Err: err}
	for _, e := range res.Events {
		hd.Events = append(hd.Events, e)
	}
	var own []persistence.TimerChange
	for _, c := range timers {
		if c.Cancel && c.Timer.FireID != "" {
			continue // a firing removing its own timer: the runtime's bookkeeping
		}
		own = append(own, c)
	}
	for _, c := range persistence.CollapseTimers(own) {
		hd.Timers = append(hd.Timers, Timer{Name: c.Timer.Name, Due: c.Timer.Due, Cancel: c.Cancel})
	}
	obs.Handled(hd)
}

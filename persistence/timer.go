package persistence

import (
	"context"
	"fmt"
	"time"
)

// Timer is a durable timer: one row per pending timer of an aggregate (a
// saga instance is one), kept by the store so that it outlives the
// process that armed it. It is an index of what the aggregate's own events
// say is pending, written in the same transaction as those events, so the
// two never disagree.
type Timer struct {
	// Owner is the aggregate type, ID the aggregate id, Name the timer's
	// name within it: together they identify the timer. Arming a name that
	// is pending replaces it.
	Owner, ID, Name string
	// Due is when the timer fires. Stores keep it to the microsecond.
	Due time.Time
	// FireID is the command id the timer fires with: unique to one arming,
	// so that a firing sent twice (by a scheduler that died after sending,
	// or two that overlap) is handled once.
	FireID string
}

// TimerChange arms a timer, or with Cancel disarms it (only its Owner, ID
// and Name count then).
type TimerChange struct {
	Timer  Timer
	Cancel bool
}

// TimerStore is an event store that keeps durable timers. Its methods are
// safe for concurrent use.
type TimerStore interface {
	// AppendWithTimers is Append that also applies timer changes, in
	// order, atomically with the events: both are written or neither is.
	AppendWithTimers(ctx context.Context, stream string, expected ExpectedVersion, events []EventData, timers []TimerChange) (AppendResult, error)
	// Timers returns up to limit pending timers of owner, earliest due
	// first (ties in no promised order).
	Timers(ctx context.Context, owner string, limit int) ([]Timer, error)
	// DeleteTimer removes t if its FireID is still the pending one — for a
	// firing its aggregate took without disarming it. A timer re-armed
	// since stays. Deleting a timer that is gone is not an error.
	DeleteTimer(ctx context.Context, t Timer) error
}

// ValidateTimers checks timer changes for an append, as stores do where
// they enter: it returns an error matching ErrInvalidInput naming the
// first bad change.
func ValidateTimers(timers []TimerChange) error {
	for i, c := range timers {
		t := c.Timer
		switch {
		case t.Owner == "" || t.ID == "" || t.Name == "":
			return fmt.Errorf("%w: timer change %d needs an owner, an id and a name", ErrInvalidTimer, i)
		case !validText(t.Owner) || !validText(t.ID) || !validText(t.Name) || !validText(t.FireID):
			return fmt.Errorf("%w: timer change %d", ErrInvalidText, i)
		case !c.Cancel && t.FireID == "":
			return fmt.Errorf("%w: timer %q of %s/%s is armed without a fire id", ErrInvalidTimer, t.Name, t.Owner, t.ID)
		case !c.Cancel && (t.Due.IsZero() || t.Due.Year() < 1 || t.Due.Year() > 9999):
			return fmt.Errorf("%w: timer %q of %s/%s is due at %v", ErrInvalidTimer, t.Name, t.Owner, t.ID, t.Due)
		}
	}
	return nil
}

// CollapseTimers returns the net effect of changes applied in order: one
// change per timer, in the order of each timer's last change.
func CollapseTimers(changes []TimerChange) []TimerChange {
	type key struct{ owner, id, name string }
	last := make(map[key]int, len(changes))
	for i, c := range changes {
		last[key{c.Timer.Owner, c.Timer.ID, c.Timer.Name}] = i
	}
	out := make([]TimerChange, 0, len(last))
	for i, c := range changes {
		if last[key{c.Timer.Owner, c.Timer.ID, c.Timer.Name}] == i {
			out = append(out, c)
		}
	}
	return out
}

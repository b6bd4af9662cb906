package persistence

import (
	"context"
	"fmt"
	"math"
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
	// Due is when the timer fires. Stores keep it exactly, to the
	// nanosecond (so it is between the years 1678 and 2262), and return
	// it in UTC.
	Due time.Time
	// FireID is the command id the timer fires with: unique to one arming,
	// so that a firing sent twice (by a scheduler that died after sending,
	// or two that overlap) is handled once.
	FireID string
}

// Before reports whether t comes before u in timer order: earliest due
// first, then by ID and Name in byte order. Every store returns timers in
// this order (PostgreSQL in a UTF-8 database, its default, where byte order
// of the stored text is byte order of the Go strings). The zero Timer
// comes before every timer.
func (t Timer) Before(u Timer) bool {
	if t.ID == "" || u.ID == "" { // the zero Timer: the start of the order
		return t.ID == "" && u.ID != ""
	}
	if c := t.Due.Compare(u.Due); c != 0 {
		return c < 0
	}
	if t.ID != u.ID {
		return t.ID < u.ID
	}
	return t.Name < u.Name
}

// ValidateTimerCursor checks the timer a [TimerStore.Timers] read pages
// after: the zero Timer, or one with text ids and a due time a store can
// keep. It returns an error matching ErrInvalidInput.
func ValidateTimerCursor(after Timer) error {
	switch {
	case after.ID == "":
		return nil
	case !ValidStreamID(after.ID) || !ValidStreamID(after.Name+"x"):
		return fmt.Errorf("%w: the timer to list timers after", ErrInvalidText)
	case after.Due.Before(minDue) || after.Due.After(maxDue):
		return fmt.Errorf("%w: the timer to list timers after is due at %v", ErrInvalidTimer, after.Due)
	}
	return nil
}

// TimerChange arms a timer, or with Cancel disarms it. A cancel names the
// timer by Owner, ID and Name; with a FireID it is conditional: the timer
// goes only if it is still that arming — how a firing removes its own
// timer without removing one re-armed since.
type TimerChange struct {
	Timer  Timer
	Cancel bool
}

// Applies reports whether the change applies to a pending timer cur with
// the same key: arms always do, cancels when unconditional or when their
// FireID is cur's.
func (c TimerChange) Applies(cur Timer) bool {
	return !c.Cancel || c.Timer.FireID == "" || c.Timer.FireID == cur.FireID
}

// TimerStore is an event store that keeps durable timers. Its methods are
// safe for concurrent use.
type TimerStore interface {
	// AppendWithTimers is Append that also applies timer changes, in
	// order, atomically with the events: both are written or neither is.
	AppendWithTimers(ctx context.Context, stream string, expected ExpectedVersion, events []EventData, timers []TimerChange) (AppendResult, error)
	// Timers returns up to limit pending timers of owner in timer order
	// (see [Timer.Before]), starting after the timer after — for the
	// first page, the zero Timer. Paging on with the last timer returned
	// reads each row once, however many come before it: a scheduler
	// keeps its firings in flight without reading them again.
	Timers(ctx context.Context, owner string, after Timer, limit int) ([]Timer, error)
	// DeleteTimer removes t if its FireID is still the pending one — for a
	// firing its aggregate took without disarming it. A timer re-armed
	// since stays, and so does every timer when t.FireID is empty.
	// Deleting a timer that is gone is not an error.
	DeleteTimer(ctx context.Context, t Timer) error
	// Marks returns up to limit timers of owner named name that are due
	// [Never], in id (byte) order, starting after the id after ("" for the
	// first page). Its cost grows with the owner's marks, not with its
	// timers pending.
	Marks(ctx context.Context, owner, name, after string, limit int) ([]Timer, error)
}

// Never is the due time of a timer that never fires: a mark an aggregate
// keeps beside its timers, armed and cancelled like one, to be listed with
// [TimerStore.Marks] (a saga marks its parked instances so). Schedulers
// skip it.
var Never = time.Unix(0, math.MaxInt64).UTC()

// The due times a store can keep: nanoseconds since the Unix epoch in an
// int64.
var (
	minDue = time.Unix(0, math.MinInt64)
	maxDue = time.Unix(0, math.MaxInt64)
)

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
		case len(t.Owner) > MaxIDLength || len(t.ID) > MaxIDLength || len(t.Name) > MaxIDLength ||
			len(t.Owner)+len(t.ID)+len(t.Name) > 2*MaxIDLength || len(t.FireID) > 4*MaxIDLength:
			// Owner, id and name are one index entry (at most about 2.7 KB
			// on PostgreSQL).
			return fmt.Errorf("%w: timer change %d: timer %s of %s/%s, limits %d bytes each and %d together (fire id %d)",
				ErrTooLong, i, Quote(t.Name), Quote(t.Owner), Quote(t.ID), MaxIDLength, 2*MaxIDLength, 4*MaxIDLength)
		case !c.Cancel && t.FireID == "":
			return fmt.Errorf("%w: timer %s of %s/%s is armed without a fire id", ErrInvalidTimer, Quote(t.Name), Quote(t.Owner), Quote(t.ID))
		case !c.Cancel && (t.Due.Before(minDue) || t.Due.After(maxDue)):
			return fmt.Errorf("%w: timer %s of %s/%s is due at %v", ErrInvalidTimer, Quote(t.Name), Quote(t.Owner), Quote(t.ID), t.Due)
		}
	}
	return nil
}

// CollapseTimers returns changes with the same net effect as changes
// applied in order, for stores that apply them in one statement: per
// timer, either one arm, one unconditional cancel, or the conditional
// cancels that still depend on what is stored — never an arm and a cancel
// of one timer together. Their order is not significant. It may return
// changes itself.
func CollapseTimers(changes []TimerChange) []TimerChange {
	if len(changes) <= 1 {
		return changes
	}
	type key struct{ owner, id, name string }
	type net struct {
		final    TimerChange // with hasFinal: an arm or an unconditional cancel, known to win
		hasFinal bool
		conds    []TimerChange // conditional cancels against the stored timer
	}
	index := make(map[key]int, len(changes)) // into nets, in order of first change
	nets := make([]net, 0, len(changes))
	for _, c := range changes {
		k := key{c.Timer.Owner, c.Timer.ID, c.Timer.Name}
		i, ok := index[k]
		if !ok {
			i = len(nets)
			index[k] = i
			nets = append(nets, net{})
		}
		n := &nets[i]
		switch {
		case !c.Cancel || c.Timer.FireID == "":
			n.final, n.hasFinal, n.conds = c, true, nil
		case !n.hasFinal:
			n.conds = append(n.conds, c)
		case !n.final.Cancel && c.Applies(n.final.Timer):
			n.final = TimerChange{Timer: c.Timer, Cancel: true}
			n.final.Timer.FireID = "" // the arm it cancels is known: unconditional now
		}
	}
	out := make([]TimerChange, 0, len(nets))
	for _, n := range nets {
		if n.hasFinal {
			out = append(out, n.final)
		} else {
			out = append(out, n.conds...)
		}
	}
	return out
}

package projection

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Handler applies one event to a read model through tx, the store's
// transaction. It runs inside [Store.Apply]: its writes commit together
// with the projection's checkpoint, or not at all. A handler must depend on
// nothing but the event and the read model, because projections are
// rebuilt by replaying the feed. Events it has no use for it ignores
// (returns nil).
type Handler[Tx any] func(ctx context.Context, tx Tx, e persistence.RecordedEvent) error

// Projection is a named read model built from the global feed.
type Projection[Tx any] struct {
	// Name identifies the projection: its checkpoint, its lease, its tables
	// or keys. Lower-case letters, digits and single underscores, starting
	// with a letter, at most 30 characters (it becomes part of SQL schema
	// names and Redis keys).
	Name string
	// Setup creates the read model's tables (or whatever the store needs)
	// in a new, empty generation. Stores run it once per generation, in the
	// same transaction as the generation's first batch. Optional.
	Setup func(ctx context.Context, tx Tx) error
	// Handle applies one event. Required.
	Handle Handler[Tx]
	// OnFailure says what a runner does with an event Handle fails on.
	// Default Retry.
	OnFailure FailurePolicy
}

// FailurePolicy says what a runner does with an event its handler fails on.
// Whatever the policy, the events before it are applied and checkpointed,
// and other projections go on: each has its own runner.
type FailurePolicy int

const (
	// Retry retries the event with exponential back-off until it succeeds
	// (a bug fixed by a deployment, say). The projection waits meanwhile,
	// and its lag grows. A failure no retry can cure — the event's data
	// cannot be read, or the handler refused it as invalid input
	// (persistence.FaultOf is not FaultInfrastructure), or the handler
	// said so with bus.Permanent(err) — is handled as SkipAndDeadLetter
	// instead, so an event that does not decode does not stop the
	// projection (after fixing a codec, rebuild). A panic, or a schema
	// version newer than the registry knows, is retried.
	Retry FailurePolicy = iota
	// SkipAndDeadLetter records the event and the error in the store's
	// dead letters, advances the checkpoint past it and goes on.
	SkipAndDeadLetter
	// Stop stops the runner: Run returns an error matching ErrStopped.
	Stop
)

// String names the policy.
func (p FailurePolicy) String() string {
	switch p {
	case Retry:
		return "retry"
	case SkipAndDeadLetter:
		return "skip-and-dead-letter"
	case Stop:
		return "stop"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// Store keeps read models with their checkpoints. Implementations are safe
// for concurrent use and pass the conformance suite in package
// projectiontest.
type Store[Tx any] interface {
	// Apply runs p.Handle for events, in order, in one atomic unit that
	// also sets the projection's checkpoint to the last event's position;
	// the first Apply of a generation runs p.Setup first, in the same
	// unit. Events at or before the checkpoint are skipped, so a replayed
	// batch changes nothing. Positions must increase ([ErrInvalid]
	// otherwise).
	//
	// If the handler fails — its own error, or a write the store refused as
	// invalid — nothing of the batch is applied and the error is an
	// *ApplyError naming the event. Any other error (the database
	// unreachable, ctx ended) is returned as is: the batch may be retried
	// unchanged.
	Apply(ctx context.Context, p Projection[Tx], events []persistence.RecordedEvent) error
	// Checkpoint returns the position of the last event applied to name,
	// 0 when none.
	Checkpoint(ctx context.Context, name string) (int64, error)
	// DeadLetter records an event the projection skips, with the error, and
	// advances the checkpoint to it, atomically. An event at or before the
	// checkpoint is ignored.
	DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error
	// DeadLetters returns the dead letters of name, oldest first.
	DeadLetters(ctx context.Context, name string) ([]DeadLetter, error)
}

// Rebuilder is implemented by stores that rebuild a projection into a fresh
// generation (fresh tables or key space) while queries keep reading the
// current one, then switch over atomically, so a query never sees a
// half-built model. The generation being built is applied to like any
// projection, under the name StartRebuild returns.
type Rebuilder interface {
	// StartRebuild begins a rebuild of name: a new, empty generation with
	// its checkpoint at 0. If one is in progress, it returns that one.
	StartRebuild(ctx context.Context, name string) (building string, err error)
	// Rebuilding returns the generation being built for name, if any.
	Rebuilding(ctx context.Context, name string) (building string, ok bool, err error)
	// FinishRebuild makes the generation building current for name, with
	// its checkpoint and dead letters, and drops the previous generation —
	// atomically.
	FinishRebuild(ctx context.Context, name, building string) error
}

// RebuildName is the name under which stores keep the generation being
// built for name. Projection names cannot contain "__", so it never names
// a projection.
func RebuildName(name string) string { return name + "__rebuild" }

// DeadLetter is an event a projection skipped.
type DeadLetter struct {
	Event persistence.RecordedEvent
	// Error is the handler's error text.
	Error string
	// At is when the event was dead-lettered.
	At time.Time
}

// ApplyError reports the event a handler failed on. It matches ErrHandler
// and unwraps to the handler's error.
type ApplyError struct {
	// Index is the event's index in the batch given to Apply.
	Index int
	Event persistence.RecordedEvent
	Err   error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("projection: event %s (%s, position %d): %v", e.Event.ID, e.Event.Type, e.Event.GlobalPosition, e.Err)
}

// Unwrap returns ErrHandler and the handler's error.
func (e *ApplyError) Unwrap() []error { return []error{ErrHandler, e.Err} }

var (
	// ErrHandler is matched by an *ApplyError.
	ErrHandler = errors.New("projection: handler failed")
	// ErrInvalid is matched by errors for a bad projection, a bad runner
	// configuration, or a batch whose positions do not increase.
	ErrInvalid = errors.New("projection: invalid")
	// ErrStopped is matched by Run's error when the Stop policy stopped it.
	ErrStopped = errors.New("projection: stopped on a failing event")
	// ErrNotCaughtUp is matched by WaitFor's error when ctx ends before the
	// projection reaches the position.
	ErrNotCaughtUp = errors.New("projection: not caught up")
	// ErrNoRebuild is returned by Rebuild when the store cannot rebuild.
	ErrNoRebuild = errors.New("projection: the store does not support rebuilds")
	// ErrPartiallyApplied is matched by the *ApplyError of a batch a store
	// could not roll back (Redis runs the rest of a transaction in which a
	// command fails): the rest of the batch and the checkpoint took effect,
	// and the store recorded the failing event in its dead letters. The
	// runner logs it and goes on — or stops, under the Stop policy; fix the
	// handler and rebuild.
	ErrPartiallyApplied = errors.New("projection: a write failed after the batch was applied; the rest of it took effect")
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// ValidName reports whether name is a valid projection name (see
// [Projection.Name]). Stores accept these and the names of their
// generations ([RebuildName]).
func ValidName(name string) bool { return len(name) <= 30 && validName.MatchString(name) }

// ValidStoreName reports whether a store accepts name: a valid projection
// name or the [RebuildName] of one.
func ValidStoreName(name string) bool {
	return ValidName(strings.TrimSuffix(name, "__rebuild"))
}

// Validate reports everything wrong with p at once.
func (p Projection[Tx]) Validate() error {
	var errs []error
	if !ValidName(p.Name) {
		errs = append(errs, fmt.Errorf("%w: Name %q: lower-case letters, digits and single underscores, starting with a letter, at most 30 characters", ErrInvalid, p.Name))
	}
	if p.Handle == nil {
		errs = append(errs, fmt.Errorf("%w: Handle is required", ErrInvalid))
	}
	if p.OnFailure < Retry || p.OnFailure > Stop {
		errs = append(errs, fmt.Errorf("%w: unknown OnFailure %d", ErrInvalid, p.OnFailure))
	}
	return errors.Join(errs...)
}

// ValidateBatch checks what stores require of a batch: positions that
// increase. Stores call it first in Apply.
func ValidateBatch(events []persistence.RecordedEvent) error {
	for i := 1; i < len(events); i++ {
		if events[i].GlobalPosition <= events[i-1].GlobalPosition {
			return fmt.Errorf("%w: batch positions do not increase: %d after %d", ErrInvalid, events[i].GlobalPosition, events[i-1].GlobalPosition)
		}
	}
	return nil
}

// Decoded returns a handler that decodes each event with reg and passes it
// to h. Events of types reg does not know are not this projection's
// business and are skipped. An event of a known type that does not decode
// — corrupt data, a schema version no upcaster handles — is a handler
// failure, and follows the projection's failure policy.
func Decoded[Tx any](reg *persistence.Registry, h func(ctx context.Context, tx Tx, event any, rec persistence.RecordedEvent) error) Handler[Tx] {
	return func(ctx context.Context, tx Tx, rec persistence.RecordedEvent) error {
		ev, err := reg.Unmarshal(rec.EventData)
		if errors.Is(err, persistence.ErrUnknownEventType) {
			return nil
		}
		if err != nil {
			return err
		}
		return h(ctx, tx, ev, rec)
	}
}

// guarded returns p with Setup and Handle made panic-safe: a panic becomes
// their error (a *composable.PanicError), which the failure policy deals
// with like any other.
func guarded[Tx any](p Projection[Tx]) Projection[Tx] {
	if setup := p.Setup; setup != nil {
		p.Setup = func(ctx context.Context, tx Tx) (err error) {
			defer recoverInto(&err)
			return setup(ctx, tx)
		}
	}
	if handle := p.Handle; handle != nil {
		p.Handle = func(ctx context.Context, tx Tx, e persistence.RecordedEvent) (err error) {
			defer recoverInto(&err)
			return handle(ctx, tx, e)
		}
	}
	return p
}

// recoverInto turns a panic into *err.
func recoverInto(err *error) {
	if v := recover(); v != nil {
		*err = &composable.PanicError{Value: v, Stack: debug.Stack()}
	}
}

// effective is the policy for a handler failure err under policy p: Retry
// does not retry what no retry can cure.
func (p FailurePolicy) effective(err error) FailurePolicy {
	if p == Retry && (persistence.FaultOf(err) != persistence.FaultInfrastructure || errors.Is(err, bus.ErrPermanent)) {
		return SkipAndDeadLetter
	}
	return p
}

package saga

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/composable-go/composable/persistence"
)

// RouteMode says what a domain event does to a saga instance.
type RouteMode int

const (
	// Ignore means the event does not concern this saga type.
	Ignore RouteMode = iota
	// Start means the event starts the instance. Strict: if the instance has
	// already started, the event is ignored (and logged).
	Start
	// Continue means the event continues a running instance. Strict: if the
	// instance has not started, or has ended, the event is ignored.
	Continue
)

// Route names the saga instance an event concerns and how.
type Route struct {
	Mode RouteMode
	// ID is the instance id, usually the correlation id carried in the
	// event's metadata or a business key from the event.
	ID string
}

// Input is what a saga reacts to; exactly one of Event, Result and Timer
// is set.
type Input struct {
	// Event is a domain event from the bus, decoded with the definition's
	// Events registry; Recorded is the event as stored.
	Event    any
	Recorded *persistence.RecordedEvent
	// Result is the outcome of a command the saga dispatched.
	Result *Result
	// Timer names a timer that fired. A timer that was cancelled, or that
	// lost a race with the saga's end, never reaches Handle.
	Timer string
}

// Result is the outcome of a dispatched command.
type Result struct {
	// Step is the command's step name.
	Step string
	// Err is the failure, or nil. It is rebuilt from a stored message, so
	// its identity is lost, with one exception: a business rejection
	// matches [aggregate.ErrRejected], and its text is the aggregate
	// handler's own message (without the runtime's prefix). Other failures
	// (retries exhausted, a bad command) keep the runtime's full text.
	Err error
	// Version and Position locate the events the command appended.
	Version, Position int64
}

// Command is a command the saga dispatches to an aggregate.
type Command struct {
	// Step names the step, unique within the instance. The command id
	// sent with it derives from the saga and the step, so a re-dispatch
	// (after a crash, say) is deduplicated by the aggregate.
	Step string
	// Aggregate is the aggregate type, ID its id, Command the command (of
	// a type registered in the definition's Commands registry).
	Aggregate, ID string
	Command       any
	// Compensation, if set, is dispatched — in reverse order of the steps
	// that succeeded — when the saga compensates, under the step name
	// [CompensationStep](Step) (its own Step is ignored).
	Compensation *Command
	// Retries bounds how often a failure the runtime deems transient (the
	// store unavailable, overload, conflicts, timeouts) is retried, with
	// exponential back-off, before the failure reaches Handle. Rejections
	// (errors matching [aggregate.ErrRejected]) are never retried, whatever
	// the handler's error wraps. Default 5.
	Retries int
	// OnFailure says what a failure that remains does. Default Report.
	OnFailure FailurePolicy
}

// FailurePolicy says what the saga does when a dispatched command fails.
type FailurePolicy int

const (
	// Report passes the failure to Handle as a Result with Err set.
	Report FailurePolicy = iota
	// Skip treats the step as done: Handle gets a Result without Err, and
	// the step's compensation is not recorded.
	Skip
	// Stop fails the saga at once, without compensation, recording the
	// failure as the reason.
	Stop
	// Compensate compensates the steps that succeeded, with the failure as
	// the reason, and then fails the saga (see [Decision].Compensate).
	Compensate
	// Park parks the instance with the failure as its reason (see
	// [Saga.Resume]): the command stays pending, and is dispatched again,
	// its retries anew, when the instance is resumed. On a compensation
	// it parks the compensating instance instead of failing it.
	Park
)

// ErrorPolicy says what an instance does when the saga's own code fails:
// Handle returns an error or panics, a routed event cannot be decoded, or
// a decision's events or commands cannot be encoded. (A pending command
// that cannot be decoded when dispatched is a failure of its step: see
// [FailurePolicy].)
type ErrorPolicy int

const (
	// FailOnError ends the instance as Failed, without compensating, with
	// the error as its reason. The default.
	FailOnError ErrorPolicy = iota
	// CompensateOnError compensates the steps that succeeded, with the
	// error as the reason, and then fails the saga.
	CompensateOnError
	// ParkOnError parks the instance with the error as its reason; the
	// input that failed is kept, and handled again — by the code deployed
	// by then — when the instance is resumed (see [Saga.Resume]).
	ParkOnError
)

// Timer arms a durable timer: it is recorded with its due time, survives
// restarts and passivation, and fires once (see [Input]). Scheduling a
// name that is pending re-arms it.
type Timer struct {
	Name  string
	After time.Duration
}

// Decision is what Handle decided for one input.
type Decision[E any] struct {
	// Events are the saga's own events, applied with Apply.
	Events []E
	// Dispatch sends commands to aggregates.
	Dispatch []Command
	// Schedule arms timers; Cancel disarms them.
	Schedule []Timer
	Cancel   []string
	// Complete ends the saga successfully.
	Complete bool
	// Fail ends the saga as failed, with this reason, without compensating.
	Fail string
	// Compensate ends the saga as failed, with this reason, after
	// dispatching the compensations of the steps that succeeded, newest
	// first, one after the other. Compensation starts once no command is
	// pending: a command dispatched before or with this decision that
	// succeeds is compensated too; one that fails is logged and otherwise
	// ignored (there is nothing of it to undo), so a step that must
	// happen before compensating — cancelling the order, say — is an
	// ordinary step whose Result then decides to Compensate.
	Compensate string
	// Park parks the instance, with this reason, after recording the rest
	// of the decision: it handles nothing more until resumed (see
	// [Saga.Resume]). For a failure a person must look at — a step that
	// failed for a reason other than a rejection, say.
	Park string
}

// Definition declares a saga type: a pure reducer over its state and
// inputs, like an aggregate's, that dispatches commands and arms timers.
type Definition[S, E, Env any] struct {
	// Type names the saga type, e.g. "checkout". Its instances' streams
	// are "saga-" + Type + "/" + id. Required; no "/".
	Type string
	// Topics are the bus topics the saga reads domain events from.
	Topics []string
	// Events decodes those domain events and encodes the saga's own
	// events E. Required.
	Events *persistence.Registry
	// Commands encodes the commands the saga dispatches, so that pending
	// ones survive a restart. Required.
	Commands *persistence.Registry
	// Route maps a decoded domain event (with its metadata) to an instance.
	// Required.
	Route func(event any, metadata map[string]string) Route
	// Initial returns the state of a new instance. Default: the zero S.
	Initial func(id string) S
	// Handle reacts to an input. It must be pure (time comes through
	// env). An error — or a panic — is unexpected: it is logged, and
	// OnError says what the instance does. Required.
	Handle func(state S, in Input, env Env) (Decision[E], error)
	// OnError says what an instance does when the saga's own code fails.
	// Default FailOnError.
	OnError ErrorPolicy
	// Apply evolves the state by one of the saga's events. Required.
	Apply func(state *S, event E)
	// Env is passed to Handle.
	Env Env
}

// ErrInvalidDefinition is matched by the errors of Definition.Validate.
var ErrInvalidDefinition = errors.New("saga: invalid definition")

// Validate reports every problem with d at once.
func (d Definition[S, E, Env]) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidDefinition}, args...)...))
	}
	if d.Type == "" || strings.Contains(d.Type, "/") {
		bad("Type %q must be non-empty without '/'", d.Type)
	}
	if d.Events == nil || d.Commands == nil {
		bad("Events and Commands registries are required")
	}
	if d.Route == nil || d.Handle == nil || d.Apply == nil {
		bad("Route, Handle and Apply are required")
	}
	if d.OnError < FailOnError || d.OnError > ParkOnError {
		bad("OnError %d is not an ErrorPolicy", d.OnError)
	}
	return errors.Join(errs...)
}

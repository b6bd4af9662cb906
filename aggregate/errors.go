package aggregate

import (
	"errors"
	"fmt"

	"github.com/composable-go/composable/persistence"
)

var (
	// ErrRejected is matched by every business rejection: the command
	// handler returned an error, which the error also matches. Nothing was
	// written.
	ErrRejected = errors.New("aggregate: command rejected")
	// ErrTooManyAttempts is returned when a command kept conflicting with
	// another writer of the same stream (see Options.MaxAttempts). Nothing
	// of it was written.
	ErrTooManyAttempts = errors.New("aggregate: too many attempts")
	// ErrUnavailable is returned while an aggregate backs off after its
	// store failed; the error also wraps the store's error. Retry later.
	ErrUnavailable = errors.New("aggregate: store unavailable")
	// ErrOverloaded is returned at once when a type has Options.MaxInFlight
	// commands in flight.
	ErrOverloaded = errors.New("aggregate: overloaded")
	// ErrShuttingDown is returned for commands sent after the runtime began
	// to shut down.
	ErrShuttingDown = errors.New("aggregate: shutting down")
	// ErrInvalidDefinition is matched by the errors of Definition.Validate
	// and Options validation.
	ErrInvalidDefinition = errors.New("aggregate: invalid definition")
	// ErrUnknownType is returned by Runtime.Send for a type that was not
	// registered.
	ErrUnknownType = errors.New("aggregate: unknown type")
	// ErrInvalidDecision is matched when a command handler's decision
	// cannot be carried out as it stands — timers without events, a timer
	// without a name, events the store refuses (too large, say; the error
	// then matches the store's persistence.ErrInvalidInput error too).
	// Nothing was written, and the aggregate goes on serving other
	// commands: it is the command's fault, not the store's.
	ErrInvalidDecision = errors.New("aggregate: invalid decision")
	// ErrCorrupt is matched when stored events or snapshots cannot be
	// decoded or applied: the aggregate cannot be rebuilt. It also matches
	// persistence.ErrCorrupt: the data's fault (persistence.FaultOf).
	ErrCorrupt = fmt.Errorf("aggregate: corrupt stream: %w", persistence.ErrCorrupt)
	// ErrInvalidID is returned at once, before any aggregate is touched,
	// for an aggregate id that is empty, not valid UTF-8, holds a NUL
	// byte, or makes a stream id longer than persistence.MaxIDLength. It
	// also matches persistence.ErrInvalidInput: the caller's input.
	ErrInvalidID = fmt.Errorf("aggregate: invalid id: %w", persistence.ErrInvalidInput)
)

// RejectedError carries a business rejection. It matches ErrRejected and
// unwraps to the handler's error.
type RejectedError struct {
	Type, ID string
	Err      error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("aggregate %s/%s: rejected: %v", e.Type, e.ID, e.Err)
}

// Unwrap returns ErrRejected and the handler's error.
func (e *RejectedError) Unwrap() []error { return []error{ErrRejected, e.Err} }

package persistence

import (
	"errors"
	"fmt"
)

var (
	// ErrConcurrency is matched by every *ConcurrencyError: the stream was
	// not at the expected version, so nothing was written.
	ErrConcurrency = errors.New("persistence: concurrency conflict")
	// ErrStreamNotFound is returned by Load for a stream without events.
	ErrStreamNotFound = errors.New("persistence: stream not found")
	// ErrDuplicateEvent is matched by every *DuplicateEventError: an event
	// ID is already stored (or repeated within one append).
	ErrDuplicateEvent = errors.New("persistence: duplicate event id")
	// ErrUnknownEventType is matched by every *UnknownEventTypeError.
	ErrUnknownEventType = errors.New("persistence: unknown event type")
	// ErrInvalidInput is matched by every input the store refuses; the
	// errors below name the reason and match it too. Nothing is written.
	ErrInvalidInput = errors.New("persistence: invalid input")
	// ErrFenced is returned by a store whose fence (a cluster member's
	// token) is no longer valid: this process's membership expired, so
	// another may own its aggregates. Nothing is written; the process
	// must stop hosting until it has joined again.
	ErrFenced = errors.New("persistence: fenced: this process's cluster membership expired")
)

// The ErrInvalidInput family. Each matches ErrInvalidInput with errors.Is.
var (
	ErrEmptyStreamID      = fmt.Errorf("%w: empty stream id", ErrInvalidInput)
	ErrNoEvents           = fmt.Errorf("%w: no events", ErrInvalidInput)
	ErrEmptyEventID       = fmt.Errorf("%w: empty event id", ErrInvalidInput)
	ErrEmptyEventType     = fmt.Errorf("%w: empty event type", ErrInvalidInput)
	ErrEventTooLarge      = fmt.Errorf("%w: event too large", ErrInvalidInput)
	ErrInvalidText        = fmt.Errorf("%w: text with a NUL byte or invalid UTF-8", ErrInvalidInput)
	ErrBadExpectedVersion = fmt.Errorf("%w: bad expected version", ErrInvalidInput)
	ErrBadVersion         = fmt.Errorf("%w: bad version", ErrInvalidInput)
	ErrBadLimit           = fmt.Errorf("%w: bad limit", ErrInvalidInput)
	ErrInvalidTimer       = fmt.Errorf("%w: invalid timer", ErrInvalidInput)
	ErrTooLong            = fmt.Errorf("%w: id or name too long", ErrInvalidInput)
	ErrAppendTooLarge     = fmt.Errorf("%w: append too large", ErrInvalidInput)
)

// ConcurrencyError reports an append whose expected version did not match.
type ConcurrencyError struct {
	Stream   string
	Expected ExpectedVersion
	// Actual is the stream's version when the append was refused.
	Actual int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("persistence: stream %s: expected version %d, actual %d", Quote(e.Stream), e.Expected, e.Actual)
}

// Is reports whether target is ErrConcurrency.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

// DuplicateEventError reports an event ID that is already stored.
type DuplicateEventError struct {
	ID string
}

func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("persistence: event id %s already stored", Quote(e.ID))
}

// Is reports whether target is ErrDuplicateEvent.
func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }

// UnknownEventTypeError reports an event type a Registry does not know.
type UnknownEventTypeError struct {
	Type string
}

func (e *UnknownEventTypeError) Error() string {
	return fmt.Sprintf("persistence: unknown event type %s", Quote(e.Type))
}

// Is reports whether target is ErrUnknownEventType.
func (e *UnknownEventTypeError) Is(target error) bool { return target == ErrUnknownEventType }

// Errors of the codec [Registry] and [SnapshotCodec]. Those in the
// ErrInvalidInput family report misuse: a bad registration, or an event
// decoded as the wrong Go type.
var (
	// ErrAlreadyRegistered reports an event type name, a Go type or an
	// upcaster that is already registered.
	ErrAlreadyRegistered = fmt.Errorf("%w: already registered", ErrInvalidInput)
	// ErrCodecMismatch reports a codec that cannot encode a Go type, such as
	// the proto codec for a type that is not a proto.Message.
	ErrCodecMismatch = fmt.Errorf("%w: codec does not fit the type", ErrInvalidInput)
	// ErrTypeMismatch is returned by [Decode] for an event whose registered
	// Go type is not the requested one.
	ErrTypeMismatch = fmt.Errorf("%w: event is not of the requested Go type", ErrInvalidInput)
	// ErrSchemaVersion is matched by every *SchemaVersionError: an event's
	// schema version cannot be brought to the registered one.
	ErrSchemaVersion = errors.New("persistence: unsupported schema version")
)

// SchemaVersionError reports an event whose schema version a [Registry]
// cannot decode: newer than the registered current version (written by a
// newer release), out of range, or older with a gap in the upcaster chain.
type SchemaVersionError struct {
	// Type is the event type name.
	Type string
	// Version is the event's schema version.
	Version int
	// Current is the schema version registered for Type.
	Current int
	// MissingUpcaster is the version that has no upcaster to the next one,
	// or 0 if the event is newer than Current or its version is invalid.
	MissingUpcaster int
}

func (e *SchemaVersionError) Error() string {
	switch {
	case e.MissingUpcaster > 0:
		return fmt.Sprintf("persistence: event type %s: no upcaster from schema version %d to %d (event at %d, current %d)",
			Quote(e.Type), e.MissingUpcaster, e.MissingUpcaster+1, e.Version, e.Current)
	case e.Version > e.Current:
		return fmt.Sprintf("persistence: event type %s: schema version %d is newer than the current %d", Quote(e.Type), e.Version, e.Current)
	default:
		return fmt.Sprintf("persistence: event type %s: invalid schema version %d", Quote(e.Type), e.Version)
	}
}

// Is reports whether target is ErrSchemaVersion.
func (e *SchemaVersionError) Is(target error) bool { return target == ErrSchemaVersion }

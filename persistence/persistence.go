package persistence

import (
	"context"
	"time"
)

// ExpectedVersion is the stream version an append expects: the number of
// events already in the stream. Versions are 1-based, so a new stream is at
// 0.
type ExpectedVersion int64

const (
	// Any skips the concurrency check.
	Any ExpectedVersion = -1
	// NoStream requires that the stream does not exist yet.
	NoStream ExpectedVersion = 0
)

// EventData is an event to append.
type EventData struct {
	// ID is unique across the store; appending an ID that is already stored
	// fails with ErrDuplicateEvent, which makes a retried append (after a
	// timeout, say) safe.
	ID string
	// Type names the event, e.g. "order.placed"; a [Registry] maps it to a
	// Go type.
	Type string
	// SchemaVersion is the version of Data's encoding, for upcasting.
	SchemaVersion int
	// Data is the encoded event, protobuf by default.
	Data []byte
	// Metadata carries correlation and causation ids, the command id and
	// trace context. Empty and nil are equivalent; stores return nil.
	Metadata map[string]string
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	EventData
	// StreamID is the stream the event belongs to.
	StreamID string
	// Version is the event's 1-based position in its stream.
	Version int64
	// GlobalPosition is strictly increasing across the store, and readers of
	// the global feed never skip a committed event.
	GlobalPosition int64
	// RecordedAt is when the store wrote the event, in UTC, with microsecond
	// precision.
	RecordedAt time.Time
}

// Snapshot is the state of a stream at a version, encoded.
type Snapshot struct {
	// StreamID is the stream the snapshot summarises.
	StreamID string
	// Version is the stream version the state reflects.
	Version int64
	// SchemaVersion is the version of the state's encoding; a reader that
	// expects another version ignores the snapshot and replays the stream.
	SchemaVersion int
	// Data is the encoded state.
	Data []byte
}

// AppendResult says where an append landed.
type AppendResult struct {
	// Version is the stream's version after the append.
	Version int64
	// Position is the global position of the append's last event: what a
	// read-your-writes query waits for.
	Position int64
}

// EventStore is the source of truth: append-only streams of events and a
// global feed over all of them. Implementations are safe for concurrent use
// and pass the conformance suite in package storetest.
type EventStore interface {
	// Append writes events to stream atomically, checking expected against
	// the stream's current version; it returns only once they are durable.
	// On a mismatch it writes nothing and returns a *ConcurrencyError. It
	// validates its input (see ErrInvalidInput) and rejects event IDs that
	// are already stored with a *DuplicateEventError. It never modifies
	// events, so callers may share Data and Metadata between events and
	// appends; it reads them until it returns — and, when it returns
	// because ctx ended, possibly later, as the append may still happen —
	// so callers must not change them meanwhile.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...EventData) (AppendResult, error)
	// Load returns the stream's events with Version >= fromVersion, in
	// order. It returns ErrStreamNotFound if the stream has no events at all.
	Load(ctx context.Context, stream string, fromVersion int64) ([]RecordedEvent, error)
	// ReadAll returns up to limit events with GlobalPosition > after, in
	// order. It never returns an event while an event with a lower position
	// may still commit: what it returns is a gap-free prefix of the feed.
	ReadAll(ctx context.Context, after int64, limit int) ([]RecordedEvent, error)
}

// SnapshotStore keeps the latest snapshot per stream.
type SnapshotStore interface {
	// SaveSnapshot stores s unless a snapshot with a higher version is
	// already stored; at the same version it overwrites.
	SaveSnapshot(ctx context.Context, s Snapshot) error
	// LoadSnapshot returns the stream's latest snapshot, or false if there
	// is none.
	LoadSnapshot(ctx context.Context, stream string) (Snapshot, bool, error)
}

// HeadReader is an optional capability of an [EventStore]: the position of
// the last event of the global feed, what a reader's lag is measured
// against.
type HeadReader interface {
	// Head returns the global position of the last committed event, 0 when
	// the feed is empty. Every event up to it can be read with ReadAll.
	Head(ctx context.Context) (int64, error)
}

// Notifier is an optional capability of an [EventStore]: a hint that the
// global feed may have grown. [Subscribe] uses it to wake up early; it still
// polls, so a lost hint only costs latency.
type Notifier interface {
	// Appended returns a channel that is closed after the next append
	// commits (or after the store notices one by another process).
	Appended() <-chan struct{}
}

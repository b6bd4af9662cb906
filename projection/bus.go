package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// StreamApplier is implemented by stores that apply events arriving outside
// the global order — from the bus, which keeps only each stream's order —
// deduplicating them by stream version instead of global position. A
// projection is fed either by a [Runner] from the event store's feed or
// from the bus through [BusHandler], never both.
type StreamApplier[Tx any] interface {
	// ApplyEvent runs p.Handle for e in one atomic unit that also records
	// e.Version as the last version of e.StreamID applied to p (running
	// p.Setup first in a new generation). An event at or below that
	// version is a duplicate and is skipped; one beyond the next version
	// is refused with a *GapError, nothing applied. Events of different
	// streams may be applied concurrently. A handler failure is an
	// *ApplyError (Index 0) with nothing applied; any other error is the
	// store's.
	ApplyEvent(ctx context.Context, p Projection[Tx], e persistence.RecordedEvent) error
	// StreamVersion returns the last version of stream applied to the
	// projection name, 0 when none.
	StreamVersion(ctx context.Context, name, stream string) (int64, error)
}

// GapError is ApplyEvent's refusal of an event that is not its stream's
// next: the versions between were never applied. It matches
// ErrOutOfOrder.
type GapError struct {
	Name, Stream     string
	Applied, Version int64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("projection %s: stream %s: version %d arrived after %d", e.Name, e.Stream, e.Version, e.Applied)
}

// Unwrap returns ErrOutOfOrder.
func (e *GapError) Unwrap() error { return ErrOutOfOrder }

// ErrOutOfOrder is matched by a *GapError.
var ErrOutOfOrder = errors.New("projection: event out of stream order")

// BusHandler returns a bus handler that applies every delivery to p
// through store: subscribe it with a consumer group of the projection's
// own, so that each partition — and so each stream — has one consumer at
// a time:
//
//	h, err := projection.BusHandler(store, p, logger)
//	err = sub.Subscribe(ctx, "projection."+p.Name, topics, h)
//
// Duplicates, normal with at-least-once delivery, are skipped by stream
// version. An event that arrives before an earlier one of its stream (the
// relay re-sends a batch the broker refused in part, so the earlier one
// comes again later in the partition) is passed over with a warning to
// logger (nil: slog.Default()): it will come again too. If it never does —
// the bus no longer retains the events between — the warnings go on and
// the stream's read model stays where it is: rebuild the projection from
// the event store's feed with a [Runner].
//
// A failing event is left to the subscriber's bus.Retry policy — retried,
// then dead-lettered to the bus's dead-letter topic —, so p.OnFailure does
// not apply, and neither do checkpoints, Lag or rebuilds, which need the
// global feed: read-your-writes waits for a stream version
// ([WaitForStream]).
func BusHandler[Tx any](store StreamApplier[Tx], p Projection[Tx], logger *slog.Logger) (bus.Handler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return func(ctx context.Context, d bus.Delivery) error {
		err := store.ApplyEvent(ctx, p, d.Event)
		var gap *GapError
		if errors.As(err, &gap) {
			logger.Warn("projection: event ahead of its stream; passed over until the earlier ones arrive",
				"projection", p.Name, "stream", gap.Stream, "version", gap.Version, "applied", gap.Applied,
				"partition", d.Partition, "offset", d.Offset)
			return nil
		}
		return err
	}, nil
}

// WaitForStream blocks until the projection name has applied stream up to
// version — the Version of a command's result, say — reading it every
// poll. When ctx ends first it returns a *LagError naming the stream
// (Position and Checkpoint are then versions), matching ErrNotCaughtUp.
func WaitForStream[Tx any](ctx context.Context, store StreamApplier[Tx], name, stream string, version int64, poll time.Duration) error {
	if poll <= 0 {
		return fmt.Errorf("%w: poll interval %v", ErrInvalid, poll)
	}
	var applied int64
	for {
		v, err := store.StreamVersion(ctx, name, stream)
		if err == nil && v >= version {
			return nil
		}
		if err == nil {
			applied = v
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return &LagError{Name: name, Stream: stream, Position: version, Checkpoint: applied, Err: ctx.Err()}
		case <-t.C:
		}
	}
}

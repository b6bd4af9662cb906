package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

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
	// SkipEvent records e in name's dead letters, with the error, and e's
	// version as its stream's last applied, atomically: the bus-fed
	// SkipAndDeadLetter. Like ApplyEvent, it skips a duplicate and refuses
	// a gap.
	SkipEvent(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error
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

// ErrSkippedByRelay is matched by the cause recorded with a dead letter of
// a skip marker ([bus.SkipMarker]): the relay passed that event over.
var ErrSkippedByRelay = errors.New("projection: the relay passed the event over")

// BusOptions tunes [BusHandler].
type BusOptions struct {
	// Logger receives passed-over and failing events. Default
	// slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the waits between retries of an
	// event: the store down, or the handler failing under the Retry
	// policy. Defaults 100ms, 10s.
	MinBackoff, MaxBackoff time.Duration
	// Meter records composable.projection.applied and
	// composable.projection.failures, as a Runner does. Default: none.
	Meter metric.Meter
}

// BusHandler returns a bus handler that applies every delivery to p
// through store: subscribe it with a consumer group of the projection's
// own, so that each partition — and so each stream — has one consumer at
// a time:
//
//	h, err := projection.BusHandler(store, p, projection.BusOptions{})
//	err = sub.Subscribe(ctx, "projection."+p.Name, topics, h)
//
// Duplicates, normal with at-least-once delivery, are skipped by stream
// version. A skip marker — the relay's stand-in for an event the bus
// refused for good — is recorded in the dead letters (its cause matches
// ErrSkippedByRelay) and moves the stream past that version, whatever the
// policy. An event that arrives before an earlier one of its stream (the
// relay re-sends a batch the broker refused in part, so the earlier one
// comes again later in the partition) is passed over with a warning: it
// will come again too. If it never does — the bus no longer retains the
// events between — the warnings go on and the stream's read model stays
// where it is: rebuild the projection from the event store's feed with a
// [Runner].
//
// The handler never hands a failure to the bus's own retries, which would
// end in its dead-letter topic and leave the stream behind a gap for good.
// A store failure is retried with back-off until it passes (or ctx ends),
// holding up the partition as the runner holds up a projection. A handler
// failure follows p.OnFailure: Retry retries it likewise;
// SkipAndDeadLetter records it in the store's dead letters and moves the
// stream past it (SkipEvent); Stop returns the error as bus.Permanent, so
// the bus dead-letters that event at once — and the stream then stands
// still, with warnings, until the projection is rebuilt. Checkpoints, Lag
// and rebuilds need the global feed and do not apply: read-your-writes
// waits for a stream version ([WaitForStream]).
func BusHandler[Tx any](store StreamApplier[Tx], p Projection[Tx], opts BusOptions) (bus.Handler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 10*time.Second)
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	h := &busHandler[Tx]{store: store, p: guarded(p), opts: opts,
		attrs: metric.WithAttributes(attribute.String("projection", p.Name))}
	var err error
	if h.applied, h.failures, err = counters(opts.Meter); err != nil {
		return nil, err
	}
	return h.handle, nil
}

// busHandler applies deliveries to one projection.
type busHandler[Tx any] struct {
	store             StreamApplier[Tx]
	p                 Projection[Tx]
	opts              BusOptions
	attrs             metric.MeasurementOption
	applied, failures metric.Int64Counter
}

func (h *busHandler[Tx]) handle(ctx context.Context, d bus.Delivery) error {
	backoff := h.opts.MinBackoff
	wait := func() error {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, h.opts.MaxBackoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	skipping := false // the handler failed under SkipAndDeadLetter: record it
	var cause error
	if skip, ok := bus.Skipped(d.Event); ok {
		// The relay passed the event over: record its marker in the dead
		// letters and move the stream past it, whatever the policy.
		skipping, cause = true, fmt.Errorf("%w: %s event: %s", ErrSkippedByRelay, persistence.Quote(skip.Type), skip.Reason)
		h.failures.Add(ctx, 1, h.attrs, metric.WithAttributes(attribute.String("policy", "skipped-by-relay")))
		h.opts.Logger.Warn("projection: the relay passed over an event; dead-lettering its marker", "projection", h.p.Name,
			"stream", persistence.Quote(d.Event.StreamID), "version", d.Event.Version, "type", persistence.Quote(skip.Type), "reason", skip.Reason)
	}
	for {
		var err error
		if skipping {
			err = h.store.SkipEvent(ctx, h.p.Name, d.Event, cause)
		} else {
			err = h.store.ApplyEvent(ctx, h.p, d.Event)
		}
		var gap *GapError
		var ae *ApplyError
		switch {
		case err == nil:
			if !skipping {
				h.applied.Add(ctx, 1, h.attrs)
			}
			return nil
		case errors.Is(err, ErrPartiallyApplied):
			// The store applied the event, moved the stream past it and
			// dead-lettered it: nothing to retry or skip.
			h.opts.Logger.Error("projection: a write failed after the event was applied; it is in the dead letters", "projection", h.p.Name, "error", err)
			return nil
		case errors.As(err, &gap):
			h.opts.Logger.Warn("projection: event ahead of its stream; passed over until the earlier ones arrive",
				"projection", h.p.Name, "stream", gap.Stream, "version", gap.Version, "applied", gap.Applied,
				"partition", d.Partition, "offset", d.Offset)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ae) && !skipping:
			policy := h.p.OnFailure.effective(ae.Err)
			h.failures.Add(ctx, 1, h.attrs, metric.WithAttributes(attribute.String("policy", policy.String())))
			switch policy {
			case Stop:
				h.opts.Logger.Error("projection: handler failed; the bus dead-letters the event", "projection", h.p.Name, "error", ae)
				return bus.Permanent(fmt.Errorf("%w: %s: %w", ErrStopped, h.p.Name, ae))
			case SkipAndDeadLetter:
				h.opts.Logger.Error("projection: handler failed; dead-lettering the event", "projection", h.p.Name, "error", ae)
				skipping, cause = true, ae.Err
				continue
			default:
				h.opts.Logger.Warn("projection: handler failed; retrying", "projection", h.p.Name, "error", ae, "backoff", backoff)
			}
		default:
			h.opts.Logger.Warn("projection: store failed; retrying", "projection", h.p.Name, "error", err, "backoff", backoff)
		}
		if err := wait(); err != nil {
			return err
		}
	}
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

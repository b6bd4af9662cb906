package persistence

import (
	"context"
	"fmt"
	"time"
)

// SubscribeOptions tunes [Subscribe]. The zero value is ready to use.
type SubscribeOptions struct {
	// BatchSize is the most events read, and handed to the handler, at once.
	// Default 500.
	BatchSize int
	// PollInterval is how long Subscribe waits for new events before reading
	// again when the store gives no hint (see [Notifier]). Default 200ms.
	PollInterval time.Duration
}

func (o SubscribeOptions) withDefaults() SubscribeOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	return o
}

// Subscribe reads the global feed of store after position after — first
// catching up with the history, then following new appends — and calls
// handle with each batch of events, in feed order, on the calling goroutine.
// The next batch starts after the last event of the previous one, so a
// handler that records its checkpoint (the last GlobalPosition it handled)
// can resume exactly where it stopped.
//
// Subscribe blocks until ctx ends, returning nil, or until reading or
// handle fails, returning that error. It polls the store every
// PollInterval and wakes up earlier when the store implements [Notifier].
func Subscribe(ctx context.Context, store EventStore, after int64, opts SubscribeOptions,
	handle func(ctx context.Context, events []RecordedEvent) error,
) error {
	opts = opts.withDefaults()
	notifier, _ := store.(Notifier)
	timer := time.NewTimer(opts.PollInterval)
	defer timer.Stop()
	for {
		// Take the hint channel before reading, so an append that commits
		// between the read and the wait still wakes us.
		var hint <-chan struct{}
		if notifier != nil {
			hint = notifier.Appended()
		}
		events, err := store.ReadAll(ctx, after, opts.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("persistence: subscribe after %d: %w", after, err)
		}
		if len(events) > 0 {
			if err := handle(ctx, events); err != nil {
				return err
			}
			after = events[len(events)-1].GlobalPosition
			if len(events) == opts.BatchSize {
				continue // more history: read on without waiting
			}
		}
		timer.Reset(opts.PollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-hint:
		case <-timer.C:
		}
	}
}

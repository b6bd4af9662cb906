package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable/internal/readahead"
)

// SubscribeOptions tunes [Subscribe]. The zero value is ready to use.
type SubscribeOptions struct {
	// BatchSize is the most events read, and handed to the handler, at once.
	// Default 500.
	BatchSize int
	// PollInterval is how long Subscribe waits for new events before reading
	// again when the store gives no hint (see [Notifier]). Default 200ms.
	PollInterval time.Duration
	// OnReadError, if set, is told about each failed read of the feed.
	// Subscribe retries such reads — a dropped connection, a restarting
	// database — with a back-off up to MaxBackoff, from the same position.
	OnReadError func(error)
	// MaxBackoff caps the wait between failed reads. Default 10s.
	MaxBackoff time.Duration
}

func (o SubscribeOptions) withDefaults() SubscribeOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
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
// Subscribe blocks until ctx ends, returning nil, or until handle fails or
// the store refuses the read as invalid ([ErrInvalidInput]), returning that
// error. Other read errors are retried (see OnReadError). It polls the store
// every PollInterval and wakes up earlier when the store implements
// [Notifier].
func Subscribe(ctx context.Context, store EventStore, after int64, opts SubscribeOptions,
	handle func(ctx context.Context, events []RecordedEvent) error,
) error {
	opts = opts.withDefaults()
	notifier, _ := store.(Notifier)
	timer := time.NewTimer(opts.PollInterval)
	defer timer.Stop()
	backoff := opts.PollInterval
	var ahead readahead.Page[RecordedEvent] // the next page, read while handle runs
	defer ahead.Wait()
	for {
		// Take the hint channel before reading, so an append that commits
		// between the read and the wait still wakes us.
		var hint <-chan struct{}
		if notifier != nil {
			hint = notifier.Appended()
		}
		events, ok := ahead.Take(after, opts.BatchSize)
		var err error
		if !ok {
			events, err = store.ReadAll(ctx, after, opts.BatchSize)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrInvalidInput):
			return fmt.Errorf("persistence: subscribe after %d: %w", after, err)
		case err != nil:
			if opts.OnReadError != nil {
				opts.OnReadError(fmt.Errorf("persistence: subscribe after %d: %w", after, err))
			}
			timer.Reset(backoff)
			backoff = min(2*backoff, opts.MaxBackoff)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
			continue
		}
		backoff = opts.PollInterval
		if len(events) == opts.BatchSize { // more history: read it while this is handled
			next := events[len(events)-1].GlobalPosition
			ahead.Start(next, func() ([]RecordedEvent, error) { return store.ReadAll(ctx, next, opts.BatchSize) })
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

package projection

import (
	"context"
	"time"

	"github.com/composable-go/composable/persistence"
)

// rebuildCheckInterval is how often an active runner looks for a rebuild
// started by another process.
const rebuildCheckInterval = time.Second

// rebuild is the active runner's view of a rebuild in progress.
type rebuild[Tx any] struct {
	r         *Runner[Tx]
	rb        Rebuilder // nil when the store cannot rebuild
	building  string    // the generation being built, "" when none
	pos       int64     // its checkpoint
	moved     bool      // the last step applied events
	failed    bool      // the last switch-over failed: wait before retrying
	lastCheck time.Time
}

func newRebuild[Tx any](r *Runner[Tx]) *rebuild[Tx] {
	rb, _ := r.store.(Rebuilder)
	return &rebuild[Tx]{r: r, rb: rb}
}

// check looks for a rebuild in progress — started by Rebuild here or in
// another process, or left behind by a runner that died.
func (b *rebuild[Tx]) check(ctx context.Context) error {
	b.lastCheck = b.r.opts.Clock.Now()
	if b.rb == nil || b.building != "" {
		return nil
	}
	building, ok, err := b.rb.Rebuilding(ctx, b.r.p.Name)
	if err != nil && ctx.Err() == nil {
		b.r.opts.Logger.Warn("projection: looking for a rebuild failed; retrying", "projection", b.r.p.Name, "error", err)
		return nil // retried on the next check
	}
	if err != nil || !ok {
		return nil
	}
	pos, err := b.r.loadCheckpoint(ctx, building)
	if err != nil {
		return err
	}
	b.building, b.pos = building, pos
	b.r.opts.Logger.Info("projection: rebuilding", "projection", b.r.p.Name, "generation", building, "from", pos)
	return nil
}

// checkEvery checks when a poke or the interval says so.
func (b *rebuild[Tx]) checkEvery(ctx context.Context) error {
	select {
	case <-b.r.wake:
		b.r.poke() // leave the wake-up for the wait that follows
		return b.check(ctx)
	default:
	}
	if b.r.opts.Clock.Now().Sub(b.lastCheck) >= rebuildCheckInterval {
		return b.check(ctx)
	}
	return nil
}

// step applies the next batch to the generation being built. Once it has
// caught up with the live projection — which is at the head of the feed —
// it switches over and returns the new live checkpoint (0 otherwise).
func (b *rebuild[Tx]) step(ctx context.Context, live int64, liveCaughtUp bool) (int64, error) {
	b.moved, b.failed = false, false
	// The store is the truth, not this runner's memory of it: a switch-over
	// reported as failed may have happened, and a rebuild may have been
	// restarted (at position 0) or dropped meanwhile.
	building, ok, err := b.rb.Rebuilding(ctx, b.r.p.Name)
	if err != nil {
		if ctx.Err() == nil {
			b.r.opts.Logger.Warn("projection: reading the rebuild's state failed; retrying", "projection", b.r.p.Name, "error", err)
		}
		b.failed = true // retried after the poll interval
		return 0, nil
	}
	if !ok {
		// No rebuild any more: switched over after all, or dropped. Go on
		// from the live checkpoint as stored.
		b.building, b.pos = "", 0
		pos, err := b.r.loadCheckpoint(ctx, b.r.p.Name)
		return max(pos, live), err
	}
	b.building = building
	if b.pos, err = b.r.loadCheckpoint(ctx, b.building); err != nil {
		return 0, err
	}
	if b.pos < live {
		events, err := b.r.read(ctx, b.pos)
		if err != nil || len(events) == 0 {
			return 0, err
		}
		events = upTo(events, live) // never ahead of the live model
		p := b.r.p
		p.Name = b.building
		if b.pos, err = b.r.applyBatch(ctx, p, b.pos, events); err != nil {
			return 0, err
		}
		b.moved = true
	}
	if b.pos < live || !liveCaughtUp || ctx.Err() != nil {
		return 0, nil
	}
	if err := b.rb.FinishRebuild(ctx, b.r.p.Name, b.building); err != nil {
		b.r.opts.Logger.Warn("projection: switching to the rebuilt generation failed; retrying", "projection", b.r.p.Name, "error", err)
		b.failed = true
		return 0, nil
	}
	b.r.opts.Logger.Info("projection: rebuilt", "projection", b.r.p.Name, "checkpoint", b.pos)
	pos := b.pos
	b.building, b.pos = "", 0
	return pos, nil
}

// upTo returns the events at or before position.
func upTo(events []persistence.RecordedEvent, position int64) []persistence.RecordedEvent {
	for i, e := range events {
		if e.GlobalPosition > position {
			return events[:i]
		}
	}
	return events
}

package persistence

import "context"

// CheckpointStore records how far a named reader (a relay, a projection)
// has processed the global feed. Checkpoints only move forward: saving a
// lower position than the stored one keeps the stored one.
// Implementations are safe for concurrent use.
type CheckpointStore interface {
	// LoadCheckpoint returns the last saved position of name, or 0.
	LoadCheckpoint(ctx context.Context, name string) (int64, error)
	// SaveCheckpoint records position for name unless a higher one is
	// stored.
	SaveCheckpoint(ctx context.Context, name string, position int64) error
}

// Lease makes one process at a time the active holder of a name: the one
// relay of a store, the one runner of a projection. Implementations are
// safe for concurrent use.
type Lease interface {
	// Acquire blocks until the caller holds name, or ctx ends. The caller
	// holds it until it calls release or lost is closed — the lease was
	// lost (its connection died, say) and another process may hold it now;
	// the caller must stop acting as the holder.
	Acquire(ctx context.Context, name string) (lost <-chan struct{}, release func(), err error)
}

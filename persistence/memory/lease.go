package memory

import (
	"context"
	"sync"

	"github.com/composable-go/composable/persistence"
)

// Checkpoints is an in-memory [persistence.CheckpointStore].
type Checkpoints struct {
	mu  sync.Mutex
	pos map[string]int64
}

var _ persistence.CheckpointStore = (*Checkpoints)(nil)

// NewCheckpoints returns an empty checkpoint store.
func NewCheckpoints() *Checkpoints { return &Checkpoints{pos: map[string]int64{}} }

// LoadCheckpoint implements [persistence.CheckpointStore].
func (c *Checkpoints) LoadCheckpoint(ctx context.Context, name string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos[name], nil
}

// SaveCheckpoint implements [persistence.CheckpointStore].
func (c *Checkpoints) SaveCheckpoint(ctx context.Context, name string, position int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos[name] = max(c.pos[name], position)
	return nil
}

// Leases is an in-memory [persistence.Lease]: holders in one process take
// turns. Revoke simulates a holder losing its lease.
type Leases struct {
	mu   sync.Mutex
	held map[string]*holding
	free chan struct{} // closed and replaced whenever a lease is released
}

type holding struct {
	lost chan struct{}
}

var _ persistence.Lease = (*Leases)(nil)

// NewLeases returns leases that nobody holds.
func NewLeases() *Leases { return &Leases{held: map[string]*holding{}, free: make(chan struct{})} }

// Acquire implements [persistence.Lease].
func (l *Leases) Acquire(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	for {
		l.mu.Lock()
		if _, taken := l.held[name]; !taken {
			h := &holding{lost: make(chan struct{})}
			l.held[name] = h
			l.mu.Unlock()
			var once sync.Once
			return h.lost, func() { once.Do(func() { l.release(name, h) }) }, nil
		}
		free := l.free
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-free:
		}
	}
}

// Revoke takes name away from its holder, whose lost channel closes, and
// frees it for others — what a dead database connection does to a
// PostgreSQL lease.
func (l *Leases) Revoke(name string) {
	l.mu.Lock()
	h, ok := l.held[name]
	l.mu.Unlock()
	if ok {
		l.release(name, h)
	}
}

func (l *Leases) release(name string, h *holding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[name] != h {
		return
	}
	delete(l.held, name)
	close(h.lost)
	close(l.free)
	l.free = make(chan struct{})
}

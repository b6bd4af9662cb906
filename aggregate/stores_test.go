package aggregate_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
)

// gatedStore blocks appends until gate is closed.
type gatedStore struct {
	persistence.EventStore
	gate    chan struct{}
	blocked atomic.Int64
}

func (s *gatedStore) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	s.blocked.Add(1)
	<-s.gate
	s.blocked.Add(-1)
	return s.EventStore.Append(ctx, stream, expected, events...)
}

func (s *gatedStore) waiting() bool { return s.blocked.Load() > 0 }

var errDown = errors.New("connection refused")

// flakyStore fails every call while down.
type flakyStore struct {
	persistence.EventStore
	mu   sync.Mutex
	down bool
	n    int
}

func (s *flakyStore) setDown(d bool) { s.mu.Lock(); s.down = d; s.mu.Unlock() }
func (s *flakyStore) calls() int     { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

func (s *flakyStore) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.down {
		return errDown
	}
	return nil
}

func (s *flakyStore) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	if err := s.check(); err != nil {
		return persistence.AppendResult{}, err
	}
	return s.EventStore.Append(ctx, stream, expected, events...)
}

func (s *flakyStore) Load(ctx context.Context, stream string, from int64) ([]persistence.RecordedEvent, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.EventStore.Load(ctx, stream, from)
}

// conflictingStore refuses every append with a concurrency conflict.
type conflictingStore struct {
	persistence.EventStore
	n atomic.Int64
}

func (s *conflictingStore) Append(_ context.Context, stream string, expected persistence.ExpectedVersion, _ ...persistence.EventData) (persistence.AppendResult, error) {
	s.n.Add(1)
	return persistence.AppendResult{}, &persistence.ConcurrencyError{Stream: stream, Expected: expected, Actual: int64(expected) + 1}
}

func (s *conflictingStore) appends() int { return int(s.n.Load()) }

// loadRecorder remembers the fromVersion of the last Load.
type loadRecorder struct {
	*memory.Store
	from atomic.Int64
}

func (s *loadRecorder) Load(ctx context.Context, stream string, from int64) ([]persistence.RecordedEvent, error) {
	s.from.Store(from)
	return s.Store.Load(ctx, stream, from)
}

func (s *loadRecorder) lastFrom() int64 { return s.from.Load() }

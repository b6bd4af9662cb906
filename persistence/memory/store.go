// Package memory is an in-process [persistence.EventStore] and
// [persistence.SnapshotStore]: a real implementation, safe for concurrent
// use, that passes the same conformance suite (persistence/storetest) as the
// PostgreSQL store. Use it for fast tests and local development; it keeps
// nothing when the process ends.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// Store keeps streams, the global feed and snapshots in memory. It is safe
// for concurrent use; appends are serialised, so the global feed is ordered
// and gap-free by construction.
type Store struct {
	clock        composable.Clock
	maxEventSize int
	check        persistence.EventCheck

	mu        sync.RWMutex
	all       []persistence.RecordedEvent // the global feed; position = index+1
	streams   map[string][]int            // stream -> indexes into all
	ids       map[string]struct{}
	snapshots map[string]persistence.Snapshot
	timers    map[string]map[timerKey]persistence.Timer // by owner
	appended  chan struct{}                             // closed and replaced on every append
}

type timerKey struct{ id, name string }

var (
	_ persistence.EventStore    = (*Store)(nil)
	_ persistence.SnapshotStore = (*Store)(nil)
	_ persistence.Notifier      = (*Store)(nil)
	_ persistence.TimerStore    = (*Store)(nil)
)

// Option configures a [Store].
type Option func(*Store)

// WithClock sets the clock that stamps RecordedAt. Default: the system clock.
func WithClock(c composable.Clock) Option { return func(s *Store) { s.clock = c } }

// WithMaxEventSize sets the largest accepted event (data and metadata), in
// bytes. Default: [persistence.DefaultMaxEventSize].
func WithMaxEventSize(n int) Option { return func(s *Store) { s.maxEventSize = n } }

// WithEventCheck adds a check the store runs on every event it is asked to
// append, after its own validation (see [persistence.EventCheck]). Checks
// given in several options all run, in order.
func WithEventCheck(c persistence.EventCheck) Option {
	return func(s *Store) { s.check = persistence.Checks(s.check, c) }
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		clock:        composable.SystemClock(),
		maxEventSize: persistence.DefaultMaxEventSize,
		streams:      make(map[string][]int),
		ids:          make(map[string]struct{}),
		snapshots:    make(map[string]persistence.Snapshot),
		timers:       make(map[string]map[timerKey]persistence.Timer),
		appended:     make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Append implements [persistence.EventStore].
func (s *Store) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	return s.AppendWithTimers(ctx, stream, expected, events, nil)
}

// AppendWithTimers implements [persistence.TimerStore].
func (s *Store) AppendWithTimers(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange) (persistence.AppendResult, error) {
	if err := persistence.ValidateAppend(stream, expected, events, s.maxEventSize); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := persistence.CheckEvents(s.check, stream, events); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := persistence.ValidateTimers(timers); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return persistence.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if _, dup := s.ids[e.ID]; dup {
			return persistence.AppendResult{}, &persistence.DuplicateEventError{ID: e.ID}
		}
	}
	current := int64(len(s.streams[stream]))
	if expected != persistence.Any && int64(expected) != current {
		return persistence.AppendResult{}, &persistence.ConcurrencyError{Stream: stream, Expected: expected, Actual: current}
	}
	now := s.clock.Now().UTC().Truncate(time.Microsecond)
	for i, e := range events {
		s.all = append(s.all, persistence.RecordedEvent{
			EventData:      copyData(e),
			StreamID:       stream,
			Version:        current + int64(i) + 1,
			GlobalPosition: int64(len(s.all)) + 1,
			RecordedAt:     now,
		})
		s.streams[stream] = append(s.streams[stream], len(s.all)-1)
		s.ids[e.ID] = struct{}{}
	}
	for _, c := range timers {
		s.changeTimer(c)
	}
	close(s.appended)
	s.appended = make(chan struct{})
	return persistence.AppendResult{Version: current + int64(len(events)), Position: int64(len(s.all))}, nil
}

// Load implements [persistence.EventStore].
func (s *Store) Load(ctx context.Context, stream string, fromVersion int64) ([]persistence.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx, ok := s.streams[stream]
	if !ok {
		return nil, fmt.Errorf("%w: %s", persistence.ErrStreamNotFound, persistence.Quote(stream))
	}
	fromVersion = max(fromVersion, 1)
	if fromVersion > int64(len(idx)) {
		return nil, nil
	}
	out := make([]persistence.RecordedEvent, 0, int64(len(idx))-fromVersion+1)
	for _, i := range idx[fromVersion-1:] {
		out = append(out, copyRecorded(s.all[i]))
	}
	return out, nil
}

// ReadAll implements [persistence.EventStore].
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]persistence.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	after = max(after, 0)
	if after >= int64(len(s.all)) {
		return nil, nil
	}
	end := after + min(int64(limit), int64(len(s.all))-after) // no overflow, whatever limit
	out := make([]persistence.RecordedEvent, 0, end-after)
	for _, e := range s.all[after:end] {
		out = append(out, copyRecorded(e))
	}
	return out, nil
}

// Head implements [persistence.HeadReader].
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.all)), nil
}

// Appended implements [persistence.Notifier].
func (s *Store) Appended() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.appended
}

// SaveSnapshot implements [persistence.SnapshotStore].
func (s *Store) SaveSnapshot(ctx context.Context, snap persistence.Snapshot) error {
	if err := persistence.ValidateSnapshot(snap, s.maxEventSize); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.snapshots[snap.StreamID]; ok && old.Version > snap.Version {
		return nil
	}
	snap.Data = slices.Clone(snap.Data)
	s.snapshots[snap.StreamID] = snap
	return nil
}

// LoadSnapshot implements [persistence.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	if err := ctx.Err(); err != nil {
		return persistence.Snapshot{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap, ok := s.snapshots[stream]
	snap.Data = slices.Clone(snap.Data)
	return snap, ok, nil
}

// changeTimer applies one timer change; the caller holds mu.
func (s *Store) changeTimer(c persistence.TimerChange) {
	t := c.Timer
	k := timerKey{t.ID, t.Name}
	if c.Cancel {
		if cur, ok := s.timers[t.Owner][k]; !ok || !c.Applies(cur) {
			return
		}
		delete(s.timers[t.Owner], k)
		if len(s.timers[t.Owner]) == 0 {
			delete(s.timers, t.Owner)
		}
		return
	}
	if s.timers[t.Owner] == nil {
		s.timers[t.Owner] = map[timerKey]persistence.Timer{}
	}
	t.Due = t.Due.UTC().Round(0) // as stored: no monotonic reading
	s.timers[t.Owner][k] = t
}

// Timers implements [persistence.TimerStore].
func (s *Store) Timers(ctx context.Context, owner string, after persistence.Timer, limit int) ([]persistence.Timer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	if err := persistence.ValidateTimerCursor(after); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []persistence.Timer
	s.mu.RLock()
	for _, t := range s.timers[owner] {
		if after.Before(t) {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b persistence.Timer) int {
		switch {
		case a.Before(b):
			return -1
		case b.Before(a):
			return 1
		}
		return 0
	})
	return out[:min(limit, len(out))], nil
}

// Marks implements [persistence.TimerStore].
func (s *Store) Marks(ctx context.Context, owner, name, after string, limit int) ([]persistence.Timer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	if !persistence.ValidStreamID(after + "x") {
		return nil, fmt.Errorf("%w: the id to list marks after", persistence.ErrInvalidText)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []persistence.Timer
	s.mu.RLock()
	for k, t := range s.timers[owner] {
		if k.name == name && k.id > after && t.Due.Equal(persistence.Never) {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b persistence.Timer) int { return strings.Compare(a.ID, b.ID) })
	return out[:min(limit, len(out))], nil
}

// DeleteTimer implements [persistence.TimerStore].
func (s *Store) DeleteTimer(ctx context.Context, t persistence.Timer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.FireID != "" { // an empty one would make the cancel unconditional
		s.changeTimer(persistence.TimerChange{Timer: t, Cancel: true})
	}
	return nil
}

// Events returns a copy of the whole global feed, for inspection in tests.
func (s *Store) Events() []persistence.RecordedEvent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]persistence.RecordedEvent, len(s.all))
	for i, e := range s.all {
		out[i] = copyRecorded(e)
	}
	return out
}

// Streams returns the ids of all streams with events, sorted.
func (s *Store) Streams() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.streams))
}

func copyRecorded(e persistence.RecordedEvent) persistence.RecordedEvent {
	e.EventData = copyData(e.EventData)
	return e
}

// copyData detaches an event from the caller's memory; empty metadata is
// stored as nil, as every store returns it.
func copyData(e persistence.EventData) persistence.EventData {
	e.Data = slices.Clone(e.Data)
	if e.Data == nil {
		e.Data = []byte{}
	}
	if len(e.Metadata) == 0 {
		e.Metadata = nil
	} else {
		e.Metadata = maps.Clone(e.Metadata)
	}
	return e
}

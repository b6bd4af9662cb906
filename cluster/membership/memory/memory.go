// Package memory is an in-memory membership store, for tests and for
// nodes of one process: expiry follows the clock it is given, so that
// tests move time with a manual clock.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/cluster/membership"
)

// Store keeps member records in memory. It is safe for concurrent use.
type Store struct {
	clock composable.Clock

	mu         sync.Mutex
	records    map[string]record // by member id
	generation int64
	changed    chan struct{}
}

type record struct {
	m       membership.Member
	expires time.Time
}

var (
	_ membership.Store   = (*Store)(nil)
	_ membership.Changes = (*Store)(nil)
)

// New returns an empty store whose records expire by clock (the system
// clock if nil).
func New(clock composable.Clock) *Store {
	if clock == nil {
		clock = composable.SystemClock()
	}
	return &Store{clock: clock, records: map[string]record{}, changed: make(chan struct{})}
}

// Join implements [membership.Store].
func (s *Store) Join(ctx context.Context, m membership.Member, ttl time.Duration) (membership.Member, error) {
	if err := membership.Validate(m, ttl); err != nil {
		return membership.Member{}, err
	}
	if err := ctx.Err(); err != nil {
		return membership.Member{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	s.generation++
	m.Generation = s.generation
	m.ID = membership.MemberID(m.Name, m.Generation)
	m.Kinds = slices.Clone(m.Kinds)
	s.records[m.ID] = record{m: m, expires: s.clock.Now().Add(ttl)}
	s.notify()
	return m, nil
}

// Renew implements [membership.Store].
func (s *Store) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	if ttl < time.Millisecond || ttl > time.Hour {
		return fmt.Errorf("%w: TTL %v", membership.ErrInvalid, ttl)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	r, ok := s.records[id]
	if !ok || r.m.Generation != generation {
		return fmt.Errorf("%w: %s (generation %d)", membership.ErrExpired, id, generation)
	}
	r.expires = s.clock.Now().Add(ttl)
	s.records[id] = r
	return nil
}

// Leave implements [membership.Store].
func (s *Store) Leave(ctx context.Context, id string, generation int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.records[id]; ok && r.m.Generation == generation {
		delete(s.records, id)
		s.notify()
	}
	return nil
}

// Members implements [membership.Store].
func (s *Store) Members(ctx context.Context) ([]membership.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	out := make([]membership.Member, 0, len(s.records))
	for _, r := range s.records {
		m := r.m
		m.Kinds = slices.Clone(m.Kinds)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b membership.Member) int { return int(a.Generation - b.Generation) })
	return out, nil
}

// MembersChanged implements [membership.Changes]: the channel is closed
// at the next change.
func (s *Store) MembersChanged() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// expire drops the records whose time ran out: expiry is final.
func (s *Store) expire() {
	now := s.clock.Now()
	for id, r := range s.records {
		if !now.Before(r.expires) {
			delete(s.records, id)
			s.notify()
		}
	}
}

// notify closes the channel of those waiting for a change; s.mu is held.
func (s *Store) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

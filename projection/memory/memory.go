// Package memory is an in-memory projection store for tests and
// single-process tools: each projection's read model is a map of keys to
// values, written through a [Tx] that commits with the checkpoint.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

var (
	_ projection.Store[*Tx] = (*Store)(nil)
	_ projection.Rebuilder  = (*Store)(nil)

	_ projection.StreamApplier[*Tx] = (*Store)(nil)
)

// Store keeps read models in memory. It is safe for concurrent use;
// queries never wait for a batch being applied.
type Store struct {
	mu       sync.Mutex
	models   map[string]*model // by name, generations being built included
	building map[string]string // name → the generation being built
	now      func() time.Time
}

type model struct {
	apply      sync.Mutex   // serialises Apply and DeadLetter
	mu         sync.RWMutex // guards what follows; held only to read or to commit
	exists     bool         // a first batch committed (Setup ran)
	checkpoint int64
	data       map[string]any
	dead       []projection.DeadLetter
	streams    map[string]int64 // last version applied per stream, when fed from the bus
}

// New returns an empty store.
func New() *Store {
	return &Store{models: map[string]*model{}, building: map[string]string{}, now: time.Now}
}

// model returns the model of name, created empty if need be.
func (s *Store) model(name string) *model {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.models[name]
	if !ok {
		m = &model{data: map[string]any{}}
		s.models[name] = m
	}
	return m
}

// Tx is a read model's transaction: reads see the model as committed plus
// this transaction's writes. Values are stored as given, not copied: store
// values (strings, numbers, structs of them), or never mutate what you Put.
type Tx struct {
	base   map[string]any
	writes map[string]any
	dels   map[string]bool
}

// Get returns the value under key.
func (t *Tx) Get(key string) (any, bool) {
	if t.dels[key] {
		return nil, false
	}
	if v, ok := t.writes[key]; ok {
		return v, true
	}
	v, ok := t.base[key]
	return v, ok
}

// Put sets the value under key.
func (t *Tx) Put(key string, v any) {
	delete(t.dels, key)
	t.writes[key] = v
}

// Delete removes key.
func (t *Tx) Delete(key string) {
	delete(t.writes, key)
	t.dels[key] = true
}

// Keys returns the keys with prefix, sorted.
func (t *Tx) Keys(prefix string) []string {
	var keys []string
	for k := range t.base {
		if strings.HasPrefix(k, prefix) && !t.dels[k] {
			if _, written := t.writes[k]; !written {
				keys = append(keys, k)
			}
		}
	}
	for k := range t.writes {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (t *Tx) commit() {
	for k := range t.dels {
		delete(t.base, k)
	}
	maps.Copy(t.base, t.writes)
}

// Apply implements [projection.Store].
func (s *Store) Apply(ctx context.Context, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := projection.ValidateBatch(events); err != nil {
		return err
	}
	m := s.model(p.Name)
	m.apply.Lock()
	defer m.apply.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Only this goroutine writes m's fields while it holds m.apply, so it
	// may read them without m.mu; queries read them under m.mu.
	tx := &Tx{base: m.data, writes: map[string]any{}, dels: map[string]bool{}}
	if !m.exists && p.Setup != nil {
		if err := p.Setup(ctx, tx); err != nil {
			return fmt.Errorf("projection/memory: setup of %s: %w", p.Name, err)
		}
	}
	last := m.checkpoint
	for i, e := range events {
		if e.GlobalPosition <= m.checkpoint {
			continue
		}
		if err := p.Handle(ctx, tx, e); err != nil {
			return &projection.ApplyError{Index: i, Event: e, Err: err}
		}
		last = e.GlobalPosition
	}
	if err := ctx.Err(); err != nil {
		return err // stopped mid-batch: nothing applied
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tx.commit()
	m.checkpoint, m.exists = last, true
	return nil
}

// ApplyEvent implements [projection.StreamApplier].
func (s *Store) ApplyEvent(ctx context.Context, p projection.Projection[*Tx], e persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	m := s.model(p.Name)
	m.apply.Lock()
	defer m.apply.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if next, err := m.next(p.Name, e); !next {
		return err
	}
	tx := &Tx{base: m.data, writes: map[string]any{}, dels: map[string]bool{}}
	if !m.exists && p.Setup != nil {
		if err := p.Setup(ctx, tx); err != nil {
			return fmt.Errorf("projection/memory: setup of %s: %w", p.Name, err)
		}
	}
	if err := p.Handle(ctx, tx, e); err != nil {
		return &projection.ApplyError{Index: 0, Event: e, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tx.commit()
	if m.streams == nil {
		m.streams = map[string]int64{}
	}
	m.streams[e.StreamID], m.exists = e.Version, true
	return nil
}

// next reports whether e is the next event of its stream in the model name:
// false with no error for one already applied, false with a *GapError for
// one ahead of its stream. The caller holds m.apply.
func (m *model) next(name string, e persistence.RecordedEvent) (bool, error) {
	applied := m.streams[e.StreamID]
	if e.Version > applied+1 {
		return false, &projection.GapError{Name: name, Stream: e.StreamID, Applied: applied, Version: e.Version}
	}
	return e.Version > applied, nil
}

// SkipEvent implements [projection.StreamApplier].
func (s *Store) SkipEvent(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	m := s.model(name)
	m.apply.Lock()
	defer m.apply.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if next, err := m.next(name, e); !next {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead = append(m.dead, projection.DeadLetter{Event: e, Error: cause.Error(), At: s.now()})
	if m.streams == nil {
		m.streams = map[string]int64{}
	}
	m.streams[e.StreamID] = e.Version
	return nil
}

// StreamVersion implements [projection.StreamApplier].
func (s *Store) StreamVersion(ctx context.Context, name, stream string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m := s.model(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.streams[stream], nil
}

// Checkpoint implements [projection.Store].
func (s *Store) Checkpoint(ctx context.Context, name string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m := s.model(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkpoint, nil
}

// DeadLetter implements [projection.Store].
func (s *Store) DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m := s.model(name)
	m.apply.Lock()
	defer m.apply.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.GlobalPosition <= m.checkpoint {
		return nil
	}
	m.dead = append(m.dead, projection.DeadLetter{Event: e, Error: cause.Error(), At: s.now()})
	m.checkpoint = e.GlobalPosition
	return nil
}

// DeadLetters implements [projection.Store].
func (s *Store) DeadLetters(ctx context.Context, name string) ([]projection.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := s.model(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.dead), nil
}

// StartRebuild implements [projection.Rebuilder].
func (s *Store) StartRebuild(ctx context.Context, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.building[name]; ok {
		return b, nil
	}
	b := projection.RebuildName(name)
	s.models[b] = &model{data: map[string]any{}}
	s.building[name] = b
	return b, nil
}

// Rebuilding implements [projection.Rebuilder].
func (s *Store) Rebuilding(ctx context.Context, name string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.building[name]
	return b, ok, nil
}

// FinishRebuild implements [projection.Rebuilder].
func (s *Store) FinishRebuild(ctx context.Context, name, building string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.building[name] != building {
		return fmt.Errorf("%w: no rebuild %q of %s in progress", projection.ErrInvalid, building, name)
	}
	b, ok := s.models[building]
	if !ok {
		b = &model{data: map[string]any{}}
	}
	s.models[name] = b
	delete(s.models, building)
	delete(s.building, name)
	return nil
}

// Get returns the value under key in the current model of name.
func (s *Store) Get(name, key string) (any, bool) {
	m := s.model(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.data[key]
	return v, ok
}

// Keys returns the keys with prefix in the current model of name, sorted.
func (s *Store) Keys(name, prefix string) []string {
	m := s.model(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	var keys []string
	for k := range m.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func checkName(name string) error {
	if projection.ValidStoreName(name) {
		return nil
	}
	return fmt.Errorf("%w: projection name %q", projection.ErrInvalid, name)
}

package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Saga hosts one saga type on an aggregate runtime: each instance is an
// event-sourced actor (an aggregate of type "saga-<Type>") that reacts to
// routed domain events, outcomes of the commands it dispatched, and its
// timers. It is safe for concurrent use.
type Saga[S, E, Env any] struct {
	def        Definition[S, E, Env]
	rt         *aggregate.Runtime
	store      persistence.EventStore
	clock      composable.Clock
	logger     *slog.Logger
	cloneState func(S) S
	typ        *aggregate.Type[Instance[S], input, event, struct{}]

	mu      sync.Mutex
	waiters map[string][]chan struct{} // by instance id, for Wait
}

// Options tunes how instances are hosted (see [aggregate.Options]; an
// instance with a pending timer or command does not passivate).
type Options = aggregate.Options

// Register hosts def on rt. Its instances' streams, and an index stream of
// started and ended instances used by [Saga.Recover], go to rt's store.
// cloneState copies the saga's state (nil: plain assignment; set it when S
// holds maps or slices the reducer mutates).
func Register[S, E, Env any](rt *aggregate.Runtime, def Definition[S, E, Env], cloneState func(S) S, opts Options) (*Saga[S, E, Env], error) {
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if def.Initial == nil {
		def.Initial = func(string) S { var s S; return s }
	}
	if cloneState == nil {
		cloneState = func(s S) S { return s }
	}
	s := &Saga[S, E, Env]{def: def, rt: rt, store: rt.Store(), clock: rt.Clock(), logger: rt.Logger(), cloneState: cloneState}
	typ, err := aggregate.Register(rt, aggregate.Definition[Instance[S], input, event, struct{}]{
		Type:       "saga-" + def.Type,
		Initial:    func(id string) Instance[S] { return Instance[S]{ID: id, State: def.Initial(id)} },
		Handle:     s.handle,
		Apply:      func(i *Instance[S], e event) { apply(&s.def, i, e) },
		Events:     frameworkRegistry(),
		Snapshots:  persistence.SnapshotCodec[Instance[S]]{SchemaVersion: 1, Codec: persistence.JSONCodec{}},
		Clone:      func(i Instance[S]) Instance[S] { return i.clone(cloneState) },
		OnActivate: s.onActivate,
	}, opts)
	if err != nil {
		return nil, err
	}
	s.typ = typ
	return s, nil
}

// Deliver routes one domain event to its instance and waits until the
// instance has handled it. Events of types the saga's registry does not know
// and events routed to Ignore are skipped. A redelivered event is handled
// once: the event id is the instance command's id.
func (s *Saga[S, E, Env]) Deliver(ctx context.Context, rec persistence.RecordedEvent) error {
	ev, err := s.def.Events.Unmarshal(rec.EventData)
	if errors.Is(err, persistence.ErrUnknownEventType) {
		return nil
	}
	if err != nil {
		return bus.Permanent(fmt.Errorf("saga %s: decode %s: %w", s.def.Type, rec.ID, err))
	}
	route := s.def.Route(ev, rec.Metadata)
	if route.Mode == Ignore {
		return nil
	}
	if route.ID == "" {
		return bus.Permanent(fmt.Errorf("saga %s: event %s routed to an empty instance id", s.def.Type, rec.ID))
	}
	if route.Mode == Start {
		if err := s.index(ctx, route.ID, false); err != nil {
			return err
		}
	}
	_, err = s.typ.Send(ctx, route.ID, input{Event: &rec, Mode: route.Mode}, aggregate.WithCommandID("event/"+rec.ID))
	return err
}

// Run recovers the instances that were active (see Recover), then consumes
// the saga's topics from sub, as consumer group "saga.<Type>", until ctx
// ends. It returns nil when ctx ends, even during recovery.
func (s *Saga[S, E, Env]) Run(ctx context.Context, sub bus.Subscriber) error {
	if err := s.Recover(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return sub.Subscribe(ctx, "saga."+s.def.Type, s.def.Topics, func(ctx context.Context, d bus.Delivery) error {
		return s.Deliver(ctx, d.Event)
	})
}

// Recover activates every instance that started and has not ended, so that
// their timers are re-armed and their pending commands re-dispatched even
// if no event arrives for them. Run calls it; call it yourself when you
// deliver events without Run.
func (s *Saga[S, E, Env]) Recover(ctx context.Context) error {
	entries, err := s.store.Load(ctx, s.indexStream(), 1)
	if errors.Is(err, persistence.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("saga %s: read index: %w", s.def.Type, err)
	}
	active := map[string]bool{}
	var order []string
	for _, e := range entries {
		var entry indexEntry
		if err := json.Unmarshal(e.Data, &entry); err != nil {
			return fmt.Errorf("saga %s: index entry %s: %w", s.def.Type, e.ID, err)
		}
		if entry.Ended {
			delete(active, entry.ID)
		} else if !active[entry.ID] {
			active[entry.ID] = true
			order = append(order, entry.ID)
		}
	}
	for _, id := range order {
		if !active[id] {
			continue
		}
		if _, err := s.typ.State(ctx, id); err != nil {
			return fmt.Errorf("saga %s: recover %s: %w", s.def.Type, id, err)
		}
	}
	return nil
}

// Wait blocks until instance id has ended — completed or failed — and
// returns its final state, or until ctx ends. It returns at once for an
// instance that has ended; for one that has not started it waits for it to
// start and end. Wait observes ends that happen on this runtime.
func (s *Saga[S, E, Env]) Wait(ctx context.Context, id string) (Instance[S], error) {
	for {
		ended := s.await(id)
		inst, err := s.Instance(ctx, id)
		if err != nil || inst.Ended() {
			s.unawait(id, ended)
			return inst, err
		}
		select {
		case <-ended:
		case <-ctx.Done():
			s.unawait(id, ended)
			return inst, ctx.Err()
		}
	}
}

// await registers a waiter for the end of id.
func (s *Saga[S, E, Env]) await(id string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters == nil {
		s.waiters = map[string][]chan struct{}{}
	}
	s.waiters[id] = append(s.waiters[id], ch)
	return ch
}

func (s *Saga[S, E, Env]) unawait(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiters[id] = slices.DeleteFunc(s.waiters[id], func(c chan struct{}) bool { return c == ch })
	if len(s.waiters[id]) == 0 {
		delete(s.waiters, id)
	}
}

// ended wakes the waiters of id.
func (s *Saga[S, E, Env]) ended(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiters[id] {
		close(ch)
	}
	delete(s.waiters, id)
}

// Instance returns the current state of an instance (activating it).
func (s *Saga[S, E, Env]) Instance(ctx context.Context, id string) (Instance[S], error) {
	res, err := s.typ.State(ctx, id)
	return res.State, err
}

// indexEntry records an instance starting or ending in the saga's index
// stream.
type indexEntry struct {
	ID    string `json:"id"`
	Ended bool   `json:"ended,omitempty"`
}

func (s *Saga[S, E, Env]) indexStream() string { return "saga-index/" + s.def.Type }

// Stream returns the stream of instance id.
func (s *Saga[S, E, Env]) Stream(id string) string { return "saga-" + s.def.Type + "/" + id }

// IsSagaStream reports whether a stream is saga bookkeeping — an
// instance's stream or a saga index — rather than a domain stream. A relay
// that only domain consumers read can leave these out (see
// relay.Config.Include).
func IsSagaStream(streamID string) bool { return strings.HasPrefix(streamID, "saga-") }

// index appends an entry; its event id is derived from the instance, so a
// repeated entry is a harmless duplicate.
func (s *Saga[S, E, Env]) index(ctx context.Context, id string, ended bool) error {
	data, _ := json.Marshal(indexEntry{ID: id, Ended: ended})
	kind := "start"
	if ended {
		kind = "end"
	}
	_, err := s.store.Append(ctx, s.indexStream(), persistence.Any, persistence.EventData{
		ID: fmt.Sprintf("saga-index/%s/%s/%s", s.def.Type, id, kind), Type: "saga.index", SchemaVersion: 1, Data: data,
	})
	if err != nil && !errors.Is(err, persistence.ErrDuplicateEvent) {
		return fmt.Errorf("saga %s: index %s %s: %w", s.def.Type, kind, id, err)
	}
	return nil
}

// indexEffect records an instance's end in the index.
func (s *Saga[S, E, Env]) indexEffect(id string, ended bool) composable.Effect[input] {
	return composable.Run(func(ctx context.Context, _ func(input)) {
		s.ended(id) // the end is stored: waiters may read it
		if err := s.index(ctx, id, ended); err != nil {
			s.logger.Warn("saga: index not updated (recovery will activate the instance, harmlessly)", "saga", s.def.Type, "id", id, "error", err)
		}
	})
}

package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

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
	// resumeAfter is how long a dispatched command may go without an
	// outcome before the instance dispatches it again.
	resumeAfter time.Duration
	inflight    counters // dispatches running in this process

	mu      sync.Mutex
	waiters map[string][]chan struct{} // by instance id, for Wait
}

// Options tunes how instances are hosted (see [aggregate.Options]). An
// instance waiting only for timers passivates and may be evicted — its
// timers are durable — while one dispatching a command stays in memory
// until the outcome. CommandTimeout is also how long a dispatched command
// may go without an outcome before the instance dispatches it again.
type Options = aggregate.Options

// Register hosts def on rt: its instances' streams and durable timers go
// to rt's store, which must keep timers ([persistence.TimerStore]; the
// memory and PostgreSQL stores do). cloneState copies the saga's state
// (nil: plain assignment; set it when S holds maps or slices the reducer
// mutates).
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
	s := &Saga[S, E, Env]{def: def, rt: rt, store: rt.Store(), clock: rt.Clock(), logger: rt.Logger(), cloneState: cloneState,
		resumeAfter: opts.CommandTimeout}
	if s.resumeAfter <= 0 {
		s.resumeAfter = 30 * time.Second // aggregate.Options' default
	}
	typ, err := aggregate.Register(rt, aggregate.Definition[Instance[S], input, event, struct{}]{
		Type:       "saga-" + def.Type,
		Initial:    func(id string) Instance[S] { return Instance[S]{ID: id, State: def.Initial(id)} },
		Handle:     s.handle,
		Apply:      func(i *Instance[S], e event) { apply(&s.def, i, e) },
		Events:     frameworkRegistry(),
		Commands:   inputRegistry(),
		Snapshots:  persistence.SnapshotCodec[Instance[S]]{SchemaVersion: 1, Codec: persistence.JSONCodec{}},
		Clone:      func(i Instance[S]) Instance[S] { return i.clone(cloneState) },
		OnActivate: s.onActivate,
		OnTimer:    onTimer,
	}, opts)
	if err != nil {
		return nil, err
	}
	s.typ = typ
	return s, nil
}

// Deliver routes one domain event to its instance and waits until the
// instance has handled it. Events of types the saga's registry does not know
// and events routed to Ignore are skipped; so is a skip marker
// (bus.SkipMarker), with a warning. A redelivered event is handled
// once: the event id is the instance command's id.
func (s *Saga[S, E, Env]) Deliver(ctx context.Context, rec persistence.RecordedEvent) error {
	if skip, ok := bus.Skipped(rec); ok {
		// The relay could not publish the event: an instance waiting for
		// it waits on (its timers run).
		s.logger.Warn("saga: the relay passed over an event; it does not reach the saga", "saga", s.def.Type,
			"event", persistence.Quote(rec.ID), "type", persistence.Quote(skip.Type), "stream", persistence.Quote(rec.StreamID), "reason", skip.Reason)
		return nil
	}
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
	_, err = s.typ.Send(ctx, route.ID, input{Event: &rec, Mode: route.Mode}, aggregate.WithCommandID("event/"+rec.ID))
	if err != nil && persistence.FaultOf(err) != persistence.FaultInfrastructure {
		// Routed to an id no instance can have, too large to record, or
		// the instance's stream cannot be read: no retry will help.
		return bus.Permanent(fmt.Errorf("saga %s: event %s: %w", s.def.Type, persistence.Quote(rec.ID), err))
	}
	return err
}

// Run consumes the saga's topics from sub, as consumer group
// "saga.<Type>", until ctx ends, and then returns nil. Timers and pending
// commands need no recovery: the runtime's timer scheduler fires them,
// also for instances that were active in a process that died.
func (s *Saga[S, E, Env]) Run(ctx context.Context, sub bus.Subscriber) error {
	return sub.Subscribe(ctx, "saga."+s.def.Type, s.def.Topics, func(ctx context.Context, d bus.Delivery) error {
		return s.Deliver(ctx, d.Event)
	})
}

// Wait blocks until instance id has ended — completed or failed — or
// parked, and returns its state then, or until ctx ends. It returns at once
// for an instance that has ended or is parked; for one that has not
// started it waits for it to start and end. Wait observes ends and
// parkings that happen on this runtime.
func (s *Saga[S, E, Env]) Wait(ctx context.Context, id string) (Instance[S], error) {
	for {
		ended := s.await(id)
		inst, err := s.Instance(ctx, id)
		if err != nil || inst.Ended() || inst.Status == Parked {
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

// Stream returns the stream of instance id.
func (s *Saga[S, E, Env]) Stream(id string) string { return "saga-" + s.def.Type + "/" + id }

// IsSagaStream reports whether a stream is saga bookkeeping — an
// instance's stream — rather than a domain stream. A relay
// that only domain consumers read can leave these out (see
// relay.Config.Include).
func IsSagaStream(streamID string) bool { return strings.HasPrefix(streamID, "saga-") }

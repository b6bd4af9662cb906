package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/persistence"
)

// Runtime hosts aggregate types on an actor system over an event store: it
// keeps one live, serial actor per aggregate id, created on demand and
// passivated when idle. It is safe for concurrent use. Close it before the
// actor system and the store.
type Runtime struct {
	sys         *actor.System
	store       persistence.EventStore
	async       asyncAppender             // store, if it answers appends through a callback
	asyncTimers asyncTimerAppender        // store, if it answers appends with timers so
	snapshots   persistence.SnapshotStore // nil: no snapshots
	timers      persistence.TimerStore    // store, if it keeps durable timers
	lease       persistence.Lease         // elects each type's timer scheduler
	observer    Observer                  // nil: none
	remote      Remote                    // nil: every command runs here
	clock       composable.Clock
	logger      *slog.Logger

	gate     sync.RWMutex // Send holds it shared to take an in-flight slot
	closing  bool
	types    map[string]hostedType
	inflight sync.WaitGroup // accepted commands not yet answered
	tasks    sync.WaitGroup // snapshot saves
	sweeps   sync.WaitGroup // passivation sweeps and timer schedulers, stopped before the actors
	stop     chan struct{}  // closed by Close: ends the sweeps
	life     context.Context
	end      context.CancelFunc // ends life, with stop: ends the schedulers
	once     sync.Once
	workers  *workers // runs the aggregate actors' mailboxes
	ids      *instanceIDs
}

// hostedType is what the untyped Runtime.Send and Close need of a Type.
type hostedType interface {
	sendAny(ctx context.Context, id string, cmd any, opts []SendOption) (Reply, error)
	receive(ctx context.Context, cmd RemoteCommand) (RemoteResult, error)
	shutdown()
}

// RuntimeOption configures a [Runtime].
type RuntimeOption func(*Runtime)

// WithSnapshotStore sets where snapshots go. By default the event store is
// used if it is also a [persistence.SnapshotStore]; without one, aggregates
// always replay their whole stream.
func WithSnapshotStore(s persistence.SnapshotStore) RuntimeOption {
	return func(r *Runtime) { r.snapshots = s }
}

// WithClock sets the clock of effects and passivation. Default: the system
// clock.
func WithClock(c composable.Clock) RuntimeOption { return func(r *Runtime) { r.clock = c } }

// WithLogger sets where the runtime logs failures that have no caller to
// return to (snapshot writes, rejected effect commands). Default
// [slog.Default].
func WithLogger(l *slog.Logger) RuntimeOption { return func(r *Runtime) { r.logger = l } }

// WithLease sets the lease that makes one process at a time run the timer
// scheduler of each aggregate type that arms durable timers. Default: the
// store, if it is a [persistence.Lease] (the PostgreSQL store is), else
// none — the scheduler runs in this process, which is right only when no
// other process shares the store.
func WithLease(l persistence.Lease) RuntimeOption { return func(r *Runtime) { r.lease = l } }

// NewRuntime returns a runtime hosting aggregates on sys, stored in store.
func NewRuntime(sys *actor.System, store persistence.EventStore, opts ...RuntimeOption) *Runtime {
	rt := &Runtime{
		sys:     sys,
		store:   store,
		clock:   composable.SystemClock(),
		logger:  slog.Default(),
		types:   map[string]hostedType{},
		stop:    make(chan struct{}),
		workers: newWorkers(10 * time.Second),
		ids:     newInstanceIDs(),
	}
	if s, ok := store.(persistence.SnapshotStore); ok {
		rt.snapshots = s
	}
	rt.async, _ = store.(asyncAppender)
	rt.asyncTimers, _ = store.(asyncTimerAppender)
	rt.timers, _ = store.(persistence.TimerStore)
	rt.lease, _ = store.(persistence.Lease)
	for _, o := range opts {
		o(rt)
	}
	if rt.lease == nil {
		rt.lease = soleLease{}
	}
	rt.life, rt.end = context.WithCancel(context.Background())
	return rt
}

// Store returns the event store the runtime writes to.
func (rt *Runtime) Store() persistence.EventStore { return rt.store }

// Clock returns the runtime's clock.
func (rt *Runtime) Clock() composable.Clock { return rt.clock }

// Logger returns the runtime's logger.
func (rt *Runtime) Logger() *slog.Logger { return rt.logger }

// Close stops accepting commands (they get ErrShuttingDown), waits for the
// commands in flight to be answered, then stops every aggregate actor —
// cancelling their effects — and waits for pending snapshot writes. It is
// idempotent.
func (rt *Runtime) Close() error {
	rt.once.Do(func() {
		rt.gate.Lock()
		rt.closing = true
		types := make([]hostedType, 0, len(rt.types))
		for _, t := range rt.types {
			types = append(types, t)
		}
		rt.gate.Unlock()
		rt.inflight.Wait()
		close(rt.stop)
		rt.end()
		rt.sweeps.Wait()
		for _, t := range types {
			t.shutdown()
		}
		rt.tasks.Wait()
		rt.workers.close()
	})
	return nil
}

// Send is the untyped form of [Type.Send], for callers that route by type
// name (gateways, sagas). cmd must be of the type's command type.
func (rt *Runtime) Send(ctx context.Context, aggregateType, id string, cmd any, opts ...SendOption) (Reply, error) {
	rt.gate.RLock()
	t, ok := rt.types[aggregateType]
	rt.gate.RUnlock()
	if !ok {
		return Reply{}, fmt.Errorf("%w: %q", ErrUnknownType, aggregateType)
	}
	return t.sendAny(ctx, id, cmd, opts)
}

// slots counts one aggregate type's commands in flight, up to a limit.
// (A counter rather than a buffered channel: every command takes and
// frees a slot, and a channel's lock is contended by all callers.)
type slots struct {
	n   atomic.Int64
	max int64
}

// admit takes one of s for one command; release frees it.
func (rt *Runtime) admit(s *slots) error {
	rt.gate.RLock()
	defer rt.gate.RUnlock()
	if rt.closing {
		return ErrShuttingDown
	}
	for {
		n := s.n.Load()
		if n >= s.max {
			return fmt.Errorf("%w: %d commands in flight", ErrOverloaded, s.max)
		}
		if s.n.CompareAndSwap(n, n+1) {
			break
		}
	}
	rt.inflight.Add(1)
	return nil
}

// free frees a slot admit took. The caller then answers the command and
// calls the runtime's inflight.Done: the slot is free before the caller
// can send again, and Close, which waits for in-flight commands, waits for
// the answer too.
func (s *slots) free() { s.n.Add(-1) }

// go runs a background task the runtime waits for in Close.
func (rt *Runtime) spawnTask(fn func()) {
	rt.tasks.Add(1)
	go func() {
		defer rt.tasks.Done()
		fn()
	}()
}

// Result is the outcome of a command.
type Result[S, E any] struct {
	// State is the aggregate's state after the command (a copy).
	State S
	// Events are the events the command appended, in order; none when the
	// command changed nothing.
	Events []E
	// Version is the stream's version after the command.
	Version int64
	// Position is the global position of the command's last event, for
	// read-your-writes; 0 when it appended nothing.
	Position int64
	// Duplicate reports that a command with the same id had already been
	// handled: nothing was written; Events, Version and Position are those
	// of the original, while State is the current state (later commands may
	// have changed it since).
	Duplicate bool
}

// Reply is the untyped form of [Result], returned by [Runtime.Send].
type Reply struct {
	State     any
	Events    []any
	Version   int64
	Position  int64
	Duplicate bool
}

// SendOption qualifies one command.
type SendOption func(*sendOptions)

type sendOptions struct {
	commandID string
	metadata  map[string]string
}

// WithCommandID gives the command an id. A command whose id the aggregate
// already handled is not run again: the caller gets the original outcome
// with Duplicate set. Use it whenever a caller may retry.
func WithCommandID(id string) SendOption { return func(o *sendOptions) { o.commandID = id } }

// WithMetadata adds metadata (correlation and causation ids, say) to the
// events the command appends. Keys only the framework writes (see
// persistence.ReservedMetadata: the command id and type) are refused with
// persistence.ErrReservedMetadata: set the command id with WithCommandID.
func WithMetadata(md map[string]string) SendOption {
	return func(o *sendOptions) {
		if o.metadata == nil {
			o.metadata = make(map[string]string, len(md))
		}
		for k, v := range md {
			o.metadata[k] = v
		}
	}
}

// Type is the typed handle of one registered aggregate type. It is safe for
// concurrent use.
type Type[S, C, E, Env any] struct {
	h *host[S, C, E, Env]
}

// Register hosts an aggregate type on rt and returns its handle. It fails
// with an error matching ErrInvalidDefinition for a bad definition or
// options, and if the type name is taken.
func Register[S, C, E, Env any](rt *Runtime, def Definition[S, C, E, Env], opts Options) (*Type[S, C, E, Env], error) {
	opts = opts.withDefaults()
	if err := errors.Join(def.Validate(), opts.validate()); err != nil {
		return nil, err
	}
	rt.gate.Lock()
	defer rt.gate.Unlock()
	if rt.closing {
		return nil, ErrShuttingDown
	}
	if _, taken := rt.types[def.Type]; taken {
		return nil, fmt.Errorf("%w: type %q registered twice", ErrInvalidDefinition, def.Type)
	}
	if rt.remote != nil && def.Commands == nil {
		return nil, fmt.Errorf("%w: type %q needs a Commands registry: the runtime is part of a cluster (WithRemote)", ErrInvalidDefinition, def.Type)
	}
	if def.OnTimer != nil && rt.timers == nil {
		return nil, fmt.Errorf("%w: type %q has OnTimer, but the store %T keeps no durable timers (persistence.TimerStore)", ErrInvalidDefinition, def.Type, rt.store)
	}
	h, err := newHost(rt, def, opts)
	if err != nil {
		return nil, err
	}
	t := &Type[S, C, E, Env]{h: h}
	rt.types[def.Type] = t
	return t, nil
}

// Send delivers cmd to the aggregate id — activating it if needed — and
// returns once the command was handled: its events are durable and applied,
// or it was rejected. If ctx ends first, Send returns ctx's error; a
// command already started may still complete (retry with the same command
// id to find out).
func (t *Type[S, C, E, Env]) Send(ctx context.Context, id string, cmd C, opts ...SendOption) (Result[S, E], error) {
	m := &envelope[S, C, E]{id: id, cmd: cmd}
	if len(opts) > 0 {
		var o sendOptions
		for _, opt := range opts {
			opt(&o)
		}
		m.commandID, m.metadata = o.commandID, o.metadata
	}
	if r := t.h.remoteTo(id); r != nil {
		return t.h.sendRemote(ctx, r, m)
	}
	return t.h.request(ctx, m)
}

// State returns the aggregate's current state and version, activating it
// if needed; Events is empty and Position 0. An aggregate without events
// has Version 0 and the initial state.
func (t *Type[S, C, E, Env]) State(ctx context.Context, id string) (Result[S, E], error) {
	m := &envelope[S, C, E]{id: id, query: true}
	if r := t.h.remoteTo(id); r != nil {
		return t.h.sendRemote(ctx, r, m)
	}
	return t.h.request(ctx, m)
}

// Live returns how many aggregates of this type are active in memory: at
// most Options.MaxLive, unless some with effects in flight refused to be
// evicted. Passivated ones may take a moment to release their memory after
// they stop counting.
func (t *Type[S, C, E, Env]) Live() int { return int(t.h.live.Load()) }

// Stream returns the name of the stream that holds aggregate id's events.
func (t *Type[S, C, E, Env]) Stream(id string) string { return streamName(t.h.def.Type, id) }

func (t *Type[S, C, E, Env]) sendAny(ctx context.Context, id string, cmd any, opts []SendOption) (Reply, error) {
	c, ok := cmd.(C)
	if !ok {
		var want C
		return Reply{}, fmt.Errorf("%w: %T is not a command of %q (%T)", ErrRejected, cmd, t.h.def.Type, want)
	}
	res, err := t.Send(ctx, id, c, opts...)
	if err != nil {
		return Reply{}, err
	}
	events := make([]any, len(res.Events))
	for i, e := range res.Events {
		events[i] = e
	}
	return Reply{State: res.State, Events: events, Version: res.Version, Position: res.Position, Duplicate: res.Duplicate}, nil
}

func (t *Type[S, C, E, Env]) shutdown() { t.h.shutdown() }

func streamName(aggregateType, id string) string { return aggregateType + "/" + id }

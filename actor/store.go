package actor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	protoactor "github.com/asynkron/protoactor-go/actor"

	"github.com/composable-go/composable"
)

// Store is a running reducer: an actor that owns a state and applies actions
// to it strictly one at a time, in arrival order. Effects returned by the
// reducer run outside the actor, and the actions they send come back through
// its mailbox, in the order each effect sent them.
//
// A Store is the typed handle to its actor; all its methods are safe for
// concurrent use.
type Store[S, A, E any] struct {
	sys  *System
	name string
	pid  *protoactor.PID

	// gate orders sends against Close: a send holds it shared while it checks
	// closed and posts, and Close takes it exclusively to set closed and post
	// the poison pill, so no message can land behind the pill.
	gate    sync.RWMutex
	closed  bool
	stopped chan struct{} // closed when the actor has stopped
	once    sync.Once
}

// message is what the store's actor receives.
type message[S, A any] struct {
	ctx    context.Context
	action A
	query  bool          // read the state, reduce nothing
	reply  chan reply[S] // nil for fire-and-forget
}

type reply[S any] struct {
	state S
	err   error
}

// Spawn starts a store on sys. It fails with an error matching
// [ErrInvalidConfig] when cfg does not validate, [ErrNameTaken] when the name
// is in use, and [ErrStopped] when sys is closed.
func Spawn[S, A, E any](sys *System, cfg Config[S, A, E]) (*Store[S, A, E], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults(sys)
	st := &Store[S, A, E]{sys: sys, stopped: make(chan struct{})}
	a := &storeActor[S, A, E]{cfg: cfg, state: cfg.Initial, store: st}
	a.runner = composable.NewEffectRunner(cfg.Clock, st.post)
	if err := sys.adopt(st); err != nil {
		return nil, err
	}
	props := protoactor.PropsFromProducer(func() protoactor.Actor { return a })
	var (
		pid *protoactor.PID
		err error
	)
	if cfg.Name == "" {
		pid = sys.as.Root.SpawnPrefix(props, "store-")
	} else {
		pid, err = sys.as.Root.SpawnNamed(props, cfg.Name)
	}
	if err != nil {
		sys.forget(st)
		if errors.Is(err, protoactor.ErrNameExists) {
			return nil, fmt.Errorf("%w: %q", ErrNameTaken, cfg.Name)
		}
		return nil, fmt.Errorf("actor: spawn %q: %w", cfg.Name, err)
	}
	st.pid = pid
	st.name = pid.Id
	a.name = pid.Id
	return st, nil
}

// Name returns the store's name in its actor system.
func (s *Store[S, A, E]) Name() string { return s.name }

// Send queues action and returns without waiting for it to be reduced. ctx
// is not a deadline for the reduction: its values (trace context) travel with
// the action. Send fails only when ctx is already done or the store has
// stopped ([ErrStopped]).
func (s *Store[S, A, E]) Send(ctx context.Context, action A) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.deliver(&message[S, A]{ctx: ctx, action: action})
}

// Ask queues action and waits until it has been reduced, returning the
// state right after it (a copy made with [Config.Clone]). It returns ctx's
// error if ctx ends first — the action may still be reduced later — an error
// matching [composable.ErrPanic] if the reducer panicked (nothing changed),
// or [ErrStopped].
func (s *Store[S, A, E]) Ask(ctx context.Context, action A) (S, error) {
	return s.request(ctx, &message[S, A]{ctx: ctx, action: action, reply: make(chan reply[S], 1)})
}

// State returns a copy of the current state, read in order with the
// actions queued before the call.
func (s *Store[S, A, E]) State(ctx context.Context) (S, error) {
	return s.request(ctx, &message[S, A]{ctx: ctx, query: true, reply: make(chan reply[S], 1)})
}

// Close stops the store: actions already queued are reduced, later ones get
// [ErrStopped], then every running effect is cancelled and waited for.
// Close is idempotent and safe to call from any goroutine except an effect
// of this store.
func (s *Store[S, A, E]) Close() error {
	s.once.Do(func() {
		s.stop()
		<-s.stopped
		s.sys.forget(s)
	})
	return nil
}

func (s *Store[S, A, E]) request(ctx context.Context, m *message[S, A]) (S, error) {
	var zero S
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if err := s.deliver(m); err != nil {
		return zero, err
	}
	select {
	case r := <-m.reply:
		return r.state, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (s *Store[S, A, E]) deliver(m *message[S, A]) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return ErrStopped
	}
	s.sys.as.Root.Send(s.pid, m)
	return nil
}

// post feeds an effect's action back; after Close it is dropped.
func (s *Store[S, A, E]) post(ctx context.Context, action A) {
	_ = s.deliver(&message[S, A]{ctx: ctx, action: action})
}

// stop closes the gate and queues the poison pill behind every accepted
// message. It may run on the actor's own goroutine.
func (s *Store[S, A, E]) stop() {
	s.gate.Lock()
	defer s.gate.Unlock()
	if !s.closed {
		s.closed = true
		s.sys.as.Root.Poison(s.pid)
	}
}

// storeActor is the protoactor actor behind a Store. Only its goroutine
// touches state.
type storeActor[S, A, E any] struct {
	cfg     Config[S, A, E]
	name    string
	state   S
	scratch S // the copy the reducer works on
	runner  *composable.EffectRunner[A]
	store   *Store[S, A, E]
	failed  bool // stopped after a panic: answer ErrStopped
}

func (a *storeActor[S, A, E]) Receive(c protoactor.Context) {
	switch m := c.Message().(type) {
	case *message[S, A]:
		a.handle(m)
	case *protoactor.Stopped:
		a.runner.Close()
		close(a.store.stopped)
	}
}

func (a *storeActor[S, A, E]) handle(m *message[S, A]) {
	if a.failed {
		a.respond(m, reply[S]{err: ErrStopped})
		return
	}
	if m.query {
		a.respond(m, reply[S]{state: a.cfg.Clone(a.state)})
		return
	}
	ctx := m.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	effect, err := a.reduce(ctx, m.action)
	if err != nil {
		a.respond(m, reply[S]{err: err})
		a.cfg.Logger.Error("reducer panicked", slog.String("store", a.name), slog.String("action", fmt.Sprintf("%T", m.action)), slog.Any("error", err))
		if a.cfg.OnPanic == StopOnPanic {
			a.failed = true
			a.store.stop()
		}
		return
	}
	// Start the effect before replying: its synchronous part (sends, timers)
	// is done by the time Ask returns, which tests on a manual clock rely on.
	if !effect.IsNone() {
		a.startEffect(ctx, m.action, effect)
	}
	if m.reply != nil {
		m.reply <- reply[S]{state: a.cfg.Clone(a.state)}
	}
}

func (a *storeActor[S, A, E]) respond(m *message[S, A], r reply[S]) {
	if m.reply != nil {
		m.reply <- r
	}
}

// reduce runs the reducer on a copy of the state through the interceptors
// and keeps the copy only if the reducer returned normally.
func (a *storeActor[S, A, E]) reduce(ctx context.Context, action A) (composable.Effect[A], error) {
	if len(a.cfg.Interceptors) == 0 {
		return a.apply(action)
	}
	var (
		effect composable.Effect[A]
		err    error
		called bool
	)
	next := func(context.Context) error {
		if !called {
			called = true
			effect, err = a.apply(action)
		}
		return err
	}
	chain := next
	info := ReduceInfo{Store: a.name, Action: action}
	for i := len(a.cfg.Interceptors) - 1; i >= 0; i-- {
		ic, inner := a.cfg.Interceptors[i], chain
		chain = func(ctx context.Context) error {
			ic.InterceptReduce(ctx, info, inner)
			return err
		}
	}
	_ = chain(ctx)
	_ = next(ctx) // in case an interceptor did not call it
	return effect, err
}

// apply reduces action on a copy of the state held in the actor's scratch
// field (so the hot path allocates nothing) and commits it on success.
func (a *storeActor[S, A, E]) apply(action A) (composable.Effect[A], error) {
	a.scratch = a.cfg.Clone(a.state)
	effect, err := safeReduce(a.cfg.Reducer, &a.scratch, action, a.cfg.Env)
	if err != nil {
		var zero S
		a.scratch = zero
		return effect, fmt.Errorf("actor: store %q: reduce %T: %w", a.name, action, err)
	}
	a.state, a.scratch = a.scratch, a.state
	return effect, nil
}

func (a *storeActor[S, A, E]) startEffect(ctx context.Context, action A, effect composable.Effect[A]) {
	info := EffectInfo{Store: a.name, Action: action}
	finishers := make([]func(error), 0, len(a.cfg.Interceptors))
	for _, ic := range a.cfg.Interceptors {
		var finish func(error)
		ctx, finish = ic.InterceptEffect(ctx, info)
		if finish != nil {
			finishers = append(finishers, finish)
		}
	}
	a.runner.Start(ctx, effect, func(err error) {
		if err != nil {
			a.cfg.Logger.Error("effect panicked", slog.String("store", a.name), slog.String("action", fmt.Sprintf("%T", action)), slog.Any("error", err))
		}
		for i := len(finishers) - 1; i >= 0; i-- {
			finishers[i](err)
		}
	})
}

// safeReduce runs the reducer, turning a panic into a *composable.PanicError.
func safeReduce[S, A, E any](r composable.Reducer[S, A, E], state *S, action A, env E) (effect composable.Effect[A], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &composable.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return r.Reduce(state, action, env), nil
}

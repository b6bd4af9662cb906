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
		if errors.Is(err, protoactor.ErrNameExists) {
			return nil, fmt.Errorf("%w: %q", ErrNameTaken, cfg.Name)
		}
		return nil, fmt.Errorf("actor: spawn %q: %w", cfg.Name, err)
	}
	st.pid, st.name, a.name = pid, pid.Id, pid.Id
	// Adopt only once the store is complete, so that a concurrent
	// System.Close sees either nothing or a store it can close.
	if err := sys.adopt(st); err != nil {
		st.stop()
		<-st.stopped
		return nil, err
	}
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

// markStopped closes the gate of a store whose actor has stopped.
func (s *Store[S, A, E]) markStopped() {
	s.gate.Lock()
	s.closed = true
	s.gate.Unlock()
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
	stopped bool // stopped after a panic: answer ErrStopped
}

func (a *storeActor[S, A, E]) Receive(c protoactor.Context) {
	switch m := c.Message().(type) {
	case *message[S, A]:
		a.handle(m)
	case *protoactor.Stopped:
		a.store.markStopped()
		a.runner.Close()
		close(a.store.stopped)
	}
}

// handle processes one message. Everything user-supplied that runs here —
// the reducer, Clone, interceptors — may panic: the panic is answered and
// logged here, and never reaches protoactor's supervisor.
func (a *storeActor[S, A, E]) handle(m *message[S, A]) {
	replied := false
	respond := func(r reply[S]) {
		if m.reply != nil && !replied {
			replied = true
			m.reply <- r
		}
	}
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("actor: store %q: %T: %w", a.name, m.action, &composable.PanicError{Value: v, Stack: debug.Stack()})
			respond(reply[S]{err: err})
			a.failed(err)
		}
	}()
	if a.stopped {
		respond(reply[S]{err: ErrStopped})
		return
	}
	if m.query {
		respond(reply[S]{state: a.cfg.Clone(a.state)})
		return
	}
	ctx := m.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if m.reply == nil && composable.Cancelled(ctx) {
		return // an action of an effect cancelled since it was sent
	}
	effect, effectCtx, err := a.reduce(ctx, m.action)
	if err != nil {
		respond(reply[S]{err: err})
		a.failed(err)
		return
	}
	// Start the effect before replying: its synchronous part (sends, timers)
	// is done by the time Ask returns, which tests on a manual clock rely on.
	if !effect.IsNone() {
		a.startEffect(effectCtx, m.action, effect)
	}
	respond(reply[S]{state: a.cfg.Clone(a.state)})
}

// failed logs a recovered panic and applies the panic policy.
func (a *storeActor[S, A, E]) failed(err error) {
	a.cfg.Logger.Error("store panicked", slog.String("store", a.name), slog.Any("error", err))
	if a.cfg.OnPanic == StopOnPanic {
		a.stopped = true
		a.store.stop()
	}
}

// reduce runs the reducer on a copy of the state through the interceptors
// and keeps the copy only if the reducer returned normally. It also returns
// the context the innermost interceptor passed on, for the effect.
func (a *storeActor[S, A, E]) reduce(ctx context.Context, action A) (composable.Effect[A], context.Context, error) {
	if len(a.cfg.Interceptors) == 0 {
		effect, err := a.apply(action)
		return effect, ctx, err
	}
	var (
		effect    composable.Effect[A]
		err       error
		called    bool
		effectCtx = ctx
	)
	next := func(ctx context.Context) error {
		if !called {
			called = true
			effectCtx = ctx
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
	return effect, effectCtx, err
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
			a.finish(finishers[i], err)
		}
	})
}

// finish calls an interceptor's finish function, which may run on an
// effect's goroutine, where a panic would end the process.
func (a *storeActor[S, A, E]) finish(f func(error), err error) {
	defer func() {
		if v := recover(); v != nil {
			a.cfg.Logger.Error("interceptor panicked finishing an effect", slog.String("store", a.name), slog.Any("panic", v))
		}
	}()
	f(err)
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

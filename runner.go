package composable

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// EffectRunner runs effects for one reducer's runtime: it arms timers on its
// [Clock], keeps the registry of cancellable effects, and hands every action
// an effect produces to the send function given to [NewEffectRunner].
//
// Runtimes (the actor Store, the test kit) own one EffectRunner each; user
// code rarely needs one directly. It is safe for concurrent use.
//
// Timers of [Delay] effects that are reachable without running user code are
// armed synchronously inside [EffectRunner.Start], so a test that starts an
// effect and then advances a manual clock fires them deterministically.
type EffectRunner[A any] struct {
	x    *execution
	send func(ctx context.Context, action A)
}

// NewEffectRunner returns a runner that arms timers on clock (the system
// clock when nil) and delivers actions with send.
//
// send is called from the effects' goroutines, and from the goroutine
// calling Start for actions that need no waiting; it must not block for long.
// The ctx it receives carries the values of the context the effect was
// started with — never a deadline — and answers [Cancelled]: a runtime that
// queues actions should drop, when it gets to them, those whose effect was
// cancelled in the meantime. Pass that ctx to the next Start for the effects
// of that action: the runner then reuses its values instead of wrapping them
// again, so long chains of effects do not grow a context chain.
func NewEffectRunner[A any](clock Clock, send func(ctx context.Context, action A)) *EffectRunner[A] {
	if clock == nil {
		clock = SystemClock()
	}
	base, cancel := context.WithCancel(context.Background())
	return &EffectRunner[A]{
		x: &execution{
			clock:   clock,
			base:    base,
			stop:    cancel,
			entries: make(map[cancelKey][]*cancelEntry),
		},
		send: send,
	}
}

// Start starts e. ctx contributes its values (trace context and the like) to
// the effect, not its cancellation: effects outlive the request that caused
// them, and end when cancelled or when the runner closes. done, if not nil,
// is called once when e has finished — possibly before Start returns — with
// the first [*PanicError] recovered from its user code, or nil. After
// [EffectRunner.Close], Start runs nothing and calls done(nil).
func (r *EffectRunner[A]) Start(ctx context.Context, e Effect[A], done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if e.n == nil || !r.x.begin() {
		done(nil)
		return
	}
	values := detach(ctx)
	rootCtx, cancel := context.WithCancelCause(values)
	stop := context.AfterFunc(r.x.base, func() { cancel(ErrRunnerClosed) })
	root := &rootRun{}
	f := frame[A]{ctx: rootCtx, values: values, root: root, send: r.send}
	e.n.start(r.x, f, func() {
		stop()
		cancel(nil)
		r.x.end()
		done(root.err())
	})
}

// InFlight returns the number of started effects that have not finished.
func (r *EffectRunner[A]) InFlight() int { return int(r.x.inflight.Load()) }

// Close cancels every running effect and waits until all of them have
// finished; effects started concurrently with Close either do not run or are
// waited for too. It is idempotent. Effects must honour their context for
// Close to return, and Close must not be called from an effect of this
// runner or from a done callback.
func (r *EffectRunner[A]) Close() {
	r.x.mu.Lock()
	r.x.closed = true
	r.x.mu.Unlock()
	r.x.stop()
	r.x.wg.Wait()
}

// execution is the part of a runner that does not depend on the action type.
type execution struct {
	clock Clock
	base  context.Context
	stop  context.CancelFunc
	// wg counts started effects and the goroutines they run on. An effect is
	// added under mu while the runner is open, so Close's Wait never races
	// an Add from zero.
	wg sync.WaitGroup

	inflight atomic.Int64

	mu      sync.Mutex
	closed  bool
	entries map[cancelKey][]*cancelEntry
}

type cancelKey struct {
	scope any // nil at the root, an elementScope inside ForEach
	id    any
}

// elementScope names the cancellation scope of one ForEach element.
type elementScope struct {
	parent any
	id     any
}

// wholeScope is the id under which a scope registers itself, so that the
// whole scope can be cancelled.
type wholeScope struct{}

type cancelEntry struct{ cancel context.CancelCauseFunc }

func (x *execution) begin() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	x.wg.Add(1)
	x.inflight.Add(1)
	return true
}

func (x *execution) end() {
	x.inflight.Add(-1)
	x.wg.Done()
}

// spawn runs fn on a goroutine the runner waits for in Close. It is only
// called while a started effect holds the wait group above zero.
func (x *execution) spawn(fn func()) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		fn()
	}()
}

// after arms a timer on the clock, stoppable when the clock supports it.
func (x *execution) after(d time.Duration) (<-chan time.Time, func()) {
	if tc, ok := x.clock.(TimerClock); ok {
		return tc.NewTimer(d)
	}
	return x.clock.After(d), func() {}
}

func (x *execution) register(k cancelKey, cancel context.CancelCauseFunc) *cancelEntry {
	e := &cancelEntry{cancel: cancel}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries[k] = append(x.entries[k], e)
	return e
}

func (x *execution) unregister(k cancelKey, e *cancelEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	list := x.entries[k]
	for i, v := range list {
		if v == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(x.entries, k)
		return
	}
	x.entries[k] = list
}

func (x *execution) cancel(k cancelKey) {
	x.mu.Lock()
	list := append([]*cancelEntry(nil), x.entries[k]...)
	x.mu.Unlock()
	for _, e := range list {
		e.cancel(ErrCancelled)
	}
}

// registered returns the number of live cancellation registrations, for
// tests of the registry's bookkeeping.
func (x *execution) registered() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, l := range x.entries {
		n += len(l)
	}
	return n
}

// rootRun collects what happened while one started effect ran.
type rootRun struct {
	mu       sync.Mutex
	firstErr error
}

func (r *rootRun) fail(err error) {
	r.mu.Lock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.mu.Unlock()
}

func (r *rootRun) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstErr
}

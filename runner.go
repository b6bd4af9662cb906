package composable

import (
	"context"
	"runtime/debug"
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
// clock when nil) and delivers actions with send. send is called from the
// effects' goroutines, and from the goroutine calling Start for actions that
// need no waiting; it must not block for long.
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
// is called once when e has finished, with the first [*PanicError] recovered
// from its user code, or nil. After [EffectRunner.Close], Start runs nothing
// and calls done(nil).
func (r *EffectRunner[A]) Start(ctx context.Context, e Effect[A], done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if e.n == nil {
		done(nil)
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if !r.x.begin() {
		done(nil)
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(r.x.base, cancel)
	root := &rootRun{}
	f := frame[A]{ctx: ctx, root: root, send: r.send}
	e.n.start(r.x, f, func() {
		stop()
		cancel()
		r.x.end()
		done(root.err())
	})
}

// InFlight returns the number of started effects that have not finished.
func (r *EffectRunner[A]) InFlight() int { return int(r.x.inflight.Load()) }

// Close cancels every running effect and waits until all of them have
// finished. It is idempotent. Effects must honour their context for Close to
// return.
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
	wg    sync.WaitGroup // goroutines started for effects

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

type cancelEntry struct{ cancel context.CancelFunc }

func (x *execution) begin() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	x.inflight.Add(1)
	return true
}

func (x *execution) end() { x.inflight.Add(-1) }

// spawn runs fn on a goroutine the runner waits for in Close.
func (x *execution) spawn(fn func()) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		fn()
	}()
}

func (x *execution) register(k cancelKey, cancel context.CancelFunc) *cancelEntry {
	e := &cancelEntry{cancel: cancel}
	x.mu.Lock()
	x.entries[k] = append(x.entries[k], e)
	x.mu.Unlock()
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
		e.cancel()
	}
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

// frame is what a node needs to run: its context, where its actions go, and
// its cancellation scope.
type frame[A any] struct {
	ctx   context.Context
	send  func(ctx context.Context, action A)
	scope any
	root  *rootRun
}

// node is one step of an effect. start begins it and must call done exactly
// once, when the step and everything it started have finished.
type node[A any] interface {
	start(x *execution, f frame[A], done func())
}

type sendNode[A any] struct{ actions []A }

func (n sendNode[A]) start(_ *execution, f frame[A], done func()) {
	for _, a := range n.actions {
		if f.ctx.Err() != nil {
			break
		}
		f.send(f.ctx, a)
	}
	done()
}

type runNode[A any] struct {
	fn func(ctx context.Context, send func(A))
}

func (n runNode[A]) start(x *execution, f frame[A], done func()) {
	x.spawn(func() {
		defer done()
		var finished atomic.Bool
		send := func(a A) {
			if finished.Load() || f.ctx.Err() != nil {
				return
			}
			f.send(f.ctx, a)
		}
		defer finished.Store(true)
		defer recoverInto(f.root)
		n.fn(f.ctx, send)
	})
}

type delayNode[A any] struct {
	d     time.Duration
	inner node[A]
}

func (n delayNode[A]) start(x *execution, f frame[A], done func()) {
	fired := x.clock.After(n.d)
	x.spawn(func() {
		select {
		case <-fired:
			if f.ctx.Err() != nil {
				done()
				return
			}
			n.inner.start(x, f, done)
		case <-f.ctx.Done():
			done()
		}
	})
}

type mergeNode[A any] struct{ children []node[A] }

func (n mergeNode[A]) start(x *execution, f frame[A], done func()) {
	var left atomic.Int64
	left.Store(int64(len(n.children)))
	for _, c := range n.children {
		c.start(x, f, func() {
			if left.Add(-1) == 0 {
				done()
			}
		})
	}
}

type concatNode[A any] struct{ children []node[A] }

func (n concatNode[A]) start(x *execution, f frame[A], done func()) {
	var next func(i int)
	next = func(i int) {
		if i == len(n.children) || f.ctx.Err() != nil {
			done()
			return
		}
		n.children[i].start(x, f, func() { next(i + 1) })
	}
	next(0)
}

type cancellableNode[A any] struct {
	id             any
	inner          node[A]
	cancelInFlight bool
}

func (n cancellableNode[A]) start(x *execution, f frame[A], done func()) {
	key := cancelKey{scope: f.scope, id: n.id}
	if n.cancelInFlight {
		x.cancel(key)
	}
	startCancellable(x, f, key, f.scope, n.inner, done)
}

// startCancellable runs inner with a context registered under key, in scope.
func startCancellable[A any](x *execution, f frame[A], key cancelKey, scope any, inner node[A], done func()) {
	ctx, cancel := context.WithCancel(f.ctx)
	entry := x.register(key, cancel)
	inner.start(x, frame[A]{ctx: ctx, send: f.send, scope: scope, root: f.root}, func() {
		x.unregister(key, entry)
		cancel()
		done()
	})
}

type cancelNode[A any] struct{ ids []any }

func (n cancelNode[A]) start(x *execution, f frame[A], done func()) {
	for _, id := range n.ids {
		x.cancel(cancelKey{scope: f.scope, id: id})
	}
	done()
}

type scopeNode[A any] struct {
	id    any
	inner node[A]
}

func (n scopeNode[A]) start(x *execution, f frame[A], done func()) {
	scope := elementScope{parent: f.scope, id: n.id}
	startCancellable(x, f, cancelKey{scope: scope, id: wholeScope{}}, scope, n.inner, done)
}

type cancelScopeNode[A any] struct{ ids []any }

func (n cancelScopeNode[A]) start(x *execution, f frame[A], done func()) {
	for _, id := range n.ids {
		x.cancel(cancelKey{scope: elementScope{parent: f.scope, id: id}, id: wholeScope{}})
	}
	done()
}

type mapNode[A, B any] struct {
	inner node[A]
	f     func(A) B
}

func (n mapNode[A, B]) start(x *execution, f frame[B], done func()) {
	n.inner.start(x, frame[A]{
		ctx:   f.ctx,
		scope: f.scope,
		root:  f.root,
		send: func(ctx context.Context, a A) {
			b, ok := callMap(f.root, n.f, a)
			if ok {
				f.send(ctx, b)
			}
		},
	}, done)
}

func callMap[A, B any](root *rootRun, fn func(A) B, a A) (b B, ok bool) {
	defer recoverInto(root)
	return fn(a), true
}

// recoverInto records a panic of the calling goroutine as the root's error.
// It must be deferred directly.
func recoverInto(root *rootRun) {
	if v := recover(); v != nil {
		root.fail(&PanicError{Value: v, Stack: debug.Stack()})
	}
}

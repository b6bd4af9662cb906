package composable

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// frame is what a node needs to run: its context, where its actions go, and
// its cancellation scope.
type frame[A any] struct {
	ctx    context.Context // cancelled when the effect ends or is cancelled
	values context.Context // ctx's values without its cancellation
	send   func(ctx context.Context, action A)
	scope  any
	root   *rootRun
}

// emit hands a to the runtime with a context that carries f's values and
// answers Cancelled for f.
func (f frame[A]) emit(a A) {
	f.send(&emitted{values: f.values, alive: f.ctx}, a)
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
		f.emit(a)
	}
	done()
}

type runNode[A any] struct {
	fn func(ctx context.Context, send func(A))
}

func (n runNode[A]) start(x *execution, f frame[A], done func()) {
	if f.ctx.Err() != nil {
		done()
		return
	}
	x.spawn(func() {
		defer done()
		var finished atomic.Bool
		send := func(a A) {
			if finished.Load() || f.ctx.Err() != nil {
				return
			}
			f.emit(a)
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
	fired, stop := x.after(n.d)
	x.spawn(func() {
		select {
		case <-fired:
			if f.ctx.Err() != nil {
				done()
				return
			}
			n.inner.start(x, f, done)
		case <-f.ctx.Done():
			stop() // a cancelled delay disarms its timer
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
	ctx, cancel := context.WithCancelCause(f.ctx)
	entry := x.register(key, cancel)
	inner.start(x, frame[A]{ctx: ctx, values: f.values, send: f.send, scope: scope, root: f.root}, func() {
		x.unregister(key, entry)
		cancel(nil)
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
		ctx:    f.ctx,
		values: f.values,
		scope:  f.scope,
		root:   f.root,
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

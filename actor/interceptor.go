package actor

import "context"

// ReduceInfo describes one reduce call to an [Interceptor].
type ReduceInfo struct {
	// Store is the name of the store.
	Store string
	// Action is the action being reduced.
	Action any
}

// EffectInfo describes one effect to an [Interceptor].
type EffectInfo struct {
	// Store is the name of the store.
	Store string
	// Action is the action whose reduction returned the effect.
	Action any
}

// Interceptor observes a store's work without changing user code: tracing,
// metrics and logging plug in here. Interceptors run on the store's actor
// goroutine (InterceptReduce, and the start of InterceptEffect) and must not
// block; the finish function InterceptEffect returns runs on whichever
// goroutine finished the effect. They must be safe for concurrent use when
// shared between stores.
//
// [InterceptorFuncs] implements Interceptor from plain functions.
type Interceptor interface {
	// InterceptReduce wraps the reduction of one action. It must call next
	// once, with ctx or a context derived from it; next returns the error the
	// asker will get (a recovered reducer panic), or nil. If an interceptor
	// does not call next, the store calls it afterwards, so no action is
	// lost.
	InterceptReduce(ctx context.Context, info ReduceInfo, next func(context.Context) error)
	// InterceptEffect is called when a reduction returned an effect, before
	// the effect starts. The returned context is the one the effect runs
	// with (its values reach the actions the effect sends); finish is called
	// once when the effect has finished, with a recovered panic or nil.
	InterceptEffect(ctx context.Context, info EffectInfo) (_ context.Context, finish func(err error))
}

// InterceptorFuncs is an [Interceptor] made of optional functions; a nil
// field passes through.
type InterceptorFuncs struct {
	Reduce func(ctx context.Context, info ReduceInfo, next func(context.Context) error)
	Effect func(ctx context.Context, info EffectInfo) (context.Context, func(err error))
}

// InterceptReduce calls f.Reduce, or next when it is nil.
func (f InterceptorFuncs) InterceptReduce(ctx context.Context, info ReduceInfo, next func(context.Context) error) {
	if f.Reduce == nil {
		_ = next(ctx)
		return
	}
	f.Reduce(ctx, info, next)
}

// InterceptEffect calls f.Effect, or returns ctx unchanged when it is nil.
func (f InterceptorFuncs) InterceptEffect(ctx context.Context, info EffectInfo) (context.Context, func(error)) {
	if f.Effect == nil {
		return ctx, func(error) {}
	}
	return f.Effect(ctx, info)
}

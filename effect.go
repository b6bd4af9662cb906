package composable

import (
	"context"
	"time"
)

// Effect describes work to run after a reducer returns: sending actions,
// asynchronous work, timers, and cancellation. An Effect is a value: building
// one runs nothing, and a reducer that returns one stays pure. A runtime (an
// [EffectRunner], the actor Store, or the test kit's TestStore) runs it and
// feeds every action it produces back into the same reducer.
//
// The zero Effect is [None]. Effects are immutable and safe to share.
type Effect[A any] struct {
	n node[A]
}

// IsNone reports whether e does nothing.
func (e Effect[A]) IsNone() bool { return e.n == nil }

// None returns the effect that does nothing. It is the zero Effect.
func None[A any]() Effect[A] { return Effect[A]{} }

// Send returns an effect that feeds the given actions back, in order.
func Send[A any](actions ...A) Effect[A] {
	if len(actions) == 0 {
		return Effect[A]{}
	}
	return Effect[A]{sendNode[A]{actions: append([]A(nil), actions...)}}
}

// Run returns an effect that calls fn on its own goroutine. fn may call send
// any number of times, from its own goroutine, until it returns; each action
// is fed back in the order sent. Actions sent after fn returned or after the
// effect was cancelled are dropped.
//
// ctx is cancelled when the effect is cancelled (see [Cancel]) or when its
// runtime shuts down; fn must then return promptly, because shutdown waits for
// it. ctx carries the values (such as a trace span) of the context the action
// that returned this effect was sent with, but not its deadline.
//
// A panic in fn is recovered and reported to the runtime as a [*PanicError].
func Run[A any](fn func(ctx context.Context, send func(A))) Effect[A] {
	if fn == nil {
		return Effect[A]{}
	}
	return Effect[A]{runNode[A]{fn: fn}}
}

// Delay returns an effect that starts e after d has elapsed on the runtime's
// [Clock]. The timer is armed as soon as the Delay itself starts; cancelling
// the effect disarms it.
func Delay[A any](d time.Duration, e Effect[A]) Effect[A] {
	if e.n == nil {
		return e
	}
	return Effect[A]{delayNode[A]{d: d, inner: e.n}}
}

// Merge returns an effect that starts all effects at once and finishes when
// all have finished. Actions from different effects may interleave in any
// order; the actions of each one stay in order.
func Merge[A any](effects ...Effect[A]) Effect[A] {
	nodes := nonEmpty(effects)
	switch len(nodes) {
	case 0:
		return Effect[A]{}
	case 1:
		return Effect[A]{nodes[0]}
	}
	return Effect[A]{mergeNode[A]{children: nodes}}
}

// Concat returns an effect that runs the effects one after another: each
// starts when the previous one has finished. Cancelling the concatenation
// skips the effects not yet started.
func Concat[A any](effects ...Effect[A]) Effect[A] {
	nodes := nonEmpty(effects)
	switch len(nodes) {
	case 0:
		return Effect[A]{}
	case 1:
		return Effect[A]{nodes[0]}
	}
	return Effect[A]{concatNode[A]{children: nodes}}
}

// Cancellable returns e marked with id, so that a later [Cancel] with an
// equal id cancels it while it runs. Several effects may share an id. An id
// that cannot be a map key (an interface holding a slice, say) makes
// Cancellable panic — inside the reducer, where the runtime reports it.
//
// Ids are compared with ==, within the scope of the reducer that returned
// the effect: the effects of different [ForEach] elements never cancel each
// other even when they use the same id.
func Cancellable[A any, ID comparable](id ID, e Effect[A]) Effect[A] {
	if e.n == nil {
		return e
	}
	checkID(id)
	return Effect[A]{cancellableNode[A]{id: id, inner: e.n}}
}

// CancelInFlight is like [Cancellable], but first cancels any effect still
// running under the same id. It is the building block for debouncing and for
// "latest request wins".
func CancelInFlight[A any, ID comparable](id ID, e Effect[A]) Effect[A] {
	if e.n == nil {
		return e
	}
	checkID(id)
	return Effect[A]{cancellableNode[A]{id: id, inner: e.n, cancelInFlight: true}}
}

// Cancel returns an effect that cancels every running effect marked with one
// of ids by [Cancellable] or [CancelInFlight]. Once it has run, no action of
// those effects is reduced — not even one they sent earlier that is still
// queued (see [Cancelled]); actions reduced before it stay reduced.
func Cancel[A any, ID comparable](ids ...ID) Effect[A] {
	if len(ids) == 0 {
		return Effect[A]{}
	}
	keys := make([]any, len(ids))
	for i, id := range ids {
		checkID(id)
		keys[i] = id
	}
	return Effect[A]{cancelNode[A]{ids: keys}}
}

// Map returns an effect that runs e and turns each action it produces into
// a B with f. It lifts a child reducer's effects into its parent's action type
// (see [Scope]).
func Map[A, B any](e Effect[A], f func(A) B) Effect[B] {
	if e.n == nil {
		return Effect[B]{}
	}
	return Effect[B]{mapNode[A, B]{inner: e.n, f: f}}
}

// inScope runs e inside the cancellation scope of one collection element, so
// that its ids do not collide with other elements' and cancelScope can stop
// all of them at once.
func inScope[A any](id any, e Effect[A]) Effect[A] {
	if e.n == nil {
		return e
	}
	checkID(id)
	return Effect[A]{scopeNode[A]{id: id, inner: e.n}}
}

// cancelScope cancels every effect running in the scopes of the given
// elements.
func cancelScope[A any](ids []any) Effect[A] {
	if len(ids) == 0 {
		return Effect[A]{}
	}
	return Effect[A]{cancelScopeNode[A]{ids: ids}}
}

func nonEmpty[A any](effects []Effect[A]) []node[A] {
	nodes := make([]node[A], 0, len(effects))
	for _, e := range effects {
		if e.n != nil {
			nodes = append(nodes, e.n)
		}
	}
	return nodes
}

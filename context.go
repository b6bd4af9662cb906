package composable

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrCancelled is the cause (see [context.Cause]) of an effect's context
	// when [Cancel], [CancelInFlight] or a [ForEach] removal cancelled it.
	ErrCancelled = errors.New("composable: effect cancelled")
	// ErrRunnerClosed is the cause of an effect's context when its runtime
	// shut down.
	ErrRunnerClosed = errors.New("composable: runner closed")
)

// Cancelled reports whether ctx — the context an [EffectRunner] passed along
// with an action — belongs to an effect that has since been cancelled or
// whose runner closed. Runtimes check it when they take a queued action, and
// drop the action instead of reducing it: no action of a cancelled effect is
// reduced after the cancellation, even one that was already queued. It
// reports false for contexts not made by a runner.
func Cancelled(ctx context.Context) bool {
	alive, ok := ctx.Value(aliveKey{}).(context.Context)
	if !ok {
		return false
	}
	cause := context.Cause(alive)
	return errors.Is(cause, ErrCancelled) || errors.Is(cause, ErrRunnerClosed)
}

type aliveKey struct{}

// emitted is the context an action travels with: the effect's values,
// without its cancellation, plus a handle on the effect's context for
// Cancelled.
type emitted struct {
	values context.Context // never cancelled
	alive  context.Context // the sending frame's context
}

func (e *emitted) Deadline() (time.Time, bool) { return time.Time{}, false }
func (e *emitted) Done() <-chan struct{}       { return nil }
func (e *emitted) Err() error                  { return nil }
func (e *emitted) String() string              { return fmt.Sprint(e.values) + ".emitted" }

func (e *emitted) Value(key any) any {
	if key == (aliveKey{}) {
		return e.alive
	}
	return e.values.Value(key)
}

// detach returns a context with ctx's values that is never cancelled,
// reusing ctx when it already is one (an action's context, perhaps wrapped
// by interceptors) so that chains of effects do not nest contexts.
func detach(ctx context.Context) context.Context {
	switch {
	case ctx == nil:
		return context.Background()
	case ctx.Done() == nil:
		if e, ok := ctx.(*emitted); ok {
			return e.values
		}
		return ctx
	default:
		return context.WithoutCancel(ctx)
	}
}

// checkID panics, inside the reducer that builds the effect (where the
// runtime turns it into a typed error), when id cannot be a map key.
func checkID(id any) {
	defer func() {
		if recover() != nil {
			panic(fmt.Sprintf("composable: cancellation id %#v (%T) is not hashable", id, id))
		}
	}()
	_ = map[any]struct{}{id: {}}
}

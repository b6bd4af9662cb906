package actor

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/composable-go/composable"
)

// PanicPolicy says what a [Store] does after a panic while handling an
// action: in its reducer, or in Clone or an interceptor. The asker gets an
// error matching [composable.ErrPanic], and the panic is logged. A reducer
// panic changes nothing: the state stays as it was before the action (see
// [Config.Clone]) and no effect starts.
type PanicPolicy int

const (
	// ResumeOnPanic keeps the store serving the next actions with the state
	// from before the panicking action. It is the default: a reducer panic
	// is a bug in the handling of one action, not evidence that the state is
	// corrupt, because the reducer ran on a copy.
	ResumeOnPanic PanicPolicy = iota
	// StopOnPanic stops the store: queued and later actions get
	// [ErrStopped] and running effects are cancelled.
	StopOnPanic
)

// Config describes a store to [Spawn].
type Config[S, A, E any] struct {
	// Name identifies the store in logs, interceptors and the actor system;
	// it must be unique within the system. Empty means a generated name.
	Name string
	// Reducer runs every action. Required.
	Reducer composable.Reducer[S, A, E]
	// Initial is the state before the first action.
	Initial S
	// Env is passed to every Reduce call.
	Env E
	// Clock times Delay effects. Default: [composable.SystemClock].
	Clock composable.Clock
	// Clone copies the state. The reducer runs on a copy, so that a panic
	// leaves the state untouched, and Ask and State return a copy. The
	// default is a plain assignment: a full copy only for states made of
	// values. When the state holds maps, slices or pointers that the reducer
	// mutates in place, set Clone to a deep copy; otherwise a panicking
	// reducer can leave those parts half changed, and callers share them
	// with the actor.
	Clone func(S) S
	// OnPanic selects what happens after a reducer panic. Default:
	// [ResumeOnPanic].
	OnPanic PanicPolicy
	// Interceptors wrap every reduction and effect, first one outermost.
	Interceptors []Interceptor
	// Logger receives panics in effects. Default: the system's logger.
	Logger *slog.Logger
}

// Validate reports every problem with c at once; each matches
// [ErrInvalidConfig].
func (c Config[S, A, E]) Validate() error {
	var errs []error
	if c.Reducer == nil {
		errs = append(errs, fmt.Errorf("%w: Reducer is required", ErrInvalidConfig))
	}
	if c.OnPanic != ResumeOnPanic && c.OnPanic != StopOnPanic {
		errs = append(errs, fmt.Errorf("%w: unknown OnPanic policy %d", ErrInvalidConfig, c.OnPanic))
	}
	for i, ic := range c.Interceptors {
		if ic == nil {
			errs = append(errs, fmt.Errorf("%w: Interceptors[%d] is nil", ErrInvalidConfig, i))
		}
	}
	return errors.Join(errs...)
}

func (c Config[S, A, E]) withDefaults(sys *System) Config[S, A, E] {
	if c.Clock == nil {
		c.Clock = composable.SystemClock()
	}
	if c.Clone == nil {
		c.Clone = func(s S) S { return s }
	}
	if c.Logger == nil {
		c.Logger = sys.logger
	}
	c.Interceptors = append([]Interceptor(nil), c.Interceptors...)
	return c
}

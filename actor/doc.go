// Package actor runs reducers as actors on protoactor-go.
//
// A [Store] owns one state and applies actions to it strictly one at a time
// through its reducer. Callers use the typed handle: [Store.Send] (fire and
// forget), [Store.Ask] (wait for the state after the action) and
// [Store.State]. Effects the reducer returns run outside the actor, on a
// [composable.EffectRunner]; the actions they send come back through the
// mailbox in the order each effect sent them.
//
// # Failure
//
// The reducer runs on a copy of the state (see [Config.Clone]). If it
// panics, the copy is discarded, no effect starts, and the asker gets an
// error matching [composable.ErrPanic] that carries the panic value and
// stack. The [PanicPolicy] then decides between serving the next action
// ([ResumeOnPanic], the default) and stopping the store ([StopOnPanic]).
// Panics in effects are recovered, logged and passed to interceptors;
// they never take the actor down.
//
// # Lifecycle
//
// A [System] owns stores; [System.Close] closes them all. [Store.Close]
// reduces the actions already queued, refuses new ones with [ErrStopped],
// then cancels the running effects and waits for them: no goroutine outlives
// a closed store.
//
// # Interceptors
//
// An [Interceptor] wraps every reduction and observes every effect without
// changing user code: tracing, metrics and logging plug in there.
package actor

// Package composable is the pure core of Composable Go: reducers, effects
// and their composition. It imports nothing but the standard library; the
// actor runtime (package actor), persistence and messaging build on it.
//
// # Reducers
//
// Business logic is a [Reducer]: a pure function from the current state, an
// action and an environment of dependencies to a new state (mutated in
// place) and an [Effect]. Reducers perform no I/O, so they are trivially
// testable and replayable; everything with side effects is described by the
// returned effect and run by a runtime, which feeds the actions it produces
// back into the same reducer.
//
// # Effects
//
// An [Effect] is a value describing work: [None], [Send] (feed actions back),
// [Run] (asynchronous work on its own goroutine, with a context that is
// cancelled on cancellation or shutdown), [Delay] (on the runtime's [Clock]),
// [Merge] (in parallel), [Concat] (in sequence), [Cancellable],
// [CancelInFlight] and [Cancel] (by id), and [Map] (change the action type).
// An [EffectRunner] interprets them; runtimes own one each.
//
// # Composition
//
// Large features are built from small ones, as in The Composable
// Architecture: [Combine] runs several reducers on one state; [Scope] lifts a
// child reducer over part of a parent's state and a subset of its actions
// (described by a [Case]); [ForEach] runs a child reducer on each element of
// a keyed collection, scoping each element's effect cancellation and
// cancelling the effects of removed elements.
//
// # Time
//
// Reducers read time from a [Clock] in their environment and runtimes time
// [Delay] effects with one, so tests substitute a manual clock (package
// testkit) and never sleep.
package composable

// Package aggregate turns event-sourced aggregates, written as pure
// functions, into durable, serial actors: one live actor per aggregate id.
//
// # Defining an aggregate
//
// A [Definition] has a command handler — Handle(state, command, env)
// returning a [Decision] (events to append, and an optional effect whose
// actions are commands fed back to the same aggregate) or a business error —
// and an event applier, Apply(&state, event). State changes only by Apply,
// so replaying the stream rebuilds exactly the live state.
//
// # Running it
//
// A [Runtime] hosts registered types on an actor system over an event
// store. [Type.Send] delivers a command to the aggregate's actor, creating
// it on demand: the actor loads the latest snapshot and the events after
// it (commands arriving meanwhile wait, in mailbox order; concurrent
// callers' commands run in no promised order), then for each command
//
//	handle → append (expected version = current) → apply → reply → effects
//
// The reply comes only after the events are durable; a rejection writes
// nothing. A concurrency conflict — another writer, such as a second
// activation elsewhere in a cluster, appended first — makes the actor catch
// up and decide again, up to [Options].MaxAttempts. Commands sent with
// [WithCommandID] are idempotent: a retried id returns the original outcome
// ([Result].Duplicate) and writes nothing, across passivation and restarts.
//
// Snapshots are written in the background every [Options].SnapshotEvery
// events; idle aggregates passivate after [Options].IdleTimeout and at
// most [Options].MaxLive stay in memory — more only while some have
// effects in flight: no passivation or eviction ever cancels one (the stop
// handshake is stated in manager.go). When the store fails, the caller
// gets the error (never a false success) and the aggregate refuses
// commands with [ErrUnavailable] for a growing back-off before trying
// again.
//
// # Durable timers
//
// A decision can arm and cancel durable timers ([Decision.Arm]): rows of
// the store's timer table written with the decision's events. One
// scheduler per type, elected by lease across the processes sharing the
// store, fires each arming once by sending the command
// [Definition].OnTimer makes of it, whether the aggregate is live,
// passivated, evicted, or was active in a process that died. A plain
// Delay effect, by contrast, lives in memory.
//
// # Failure and panics
//
// A panic in Handle or Apply writes nothing and returns an error matching
// composable.ErrPanic; Apply runs on a copy before the append, and the actor
// rehydrates from the store before its next command whenever its state
// might be wrong.
package aggregate

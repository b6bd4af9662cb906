// Package saga runs multi-aggregate workflows as event-sourced actors.
//
// A saga type is a pure reducer, like an aggregate's: its [Definition]'s
// Handle reacts to an [Input] — a domain event from the bus (routed to an
// instance by Route, with strict start and continue semantics), the outcome
// of a command the instance dispatched, or one of its timers firing — and
// returns a [Decision]: the saga's own events, commands to dispatch to
// aggregates, timers to arm or cancel, and whether to complete, fail, or
// compensate.
//
// # Instances
//
// Each instance is an aggregate of type "saga-<Type>" on the same
// aggregate runtime: one live, serial actor per instance id, rebuilt from its
// stream. Routed events are deduplicated by event id (at-least-once
// delivery makes duplicates normal). An [Instance] holds the saga's state
// and what the framework tracks: pending timers with their due times,
// commands awaiting their outcome, and the compensations of the steps that
// succeeded — all recorded as events, so all of it survives restarts.
//
// # Durable timers
//
// Arming a timer records its due time in the instance's stream and, in the
// same transaction, a row of the store's timer table
// ([persistence.TimerStore]). The aggregate runtime's scheduler for the
// saga type — one across the processes sharing the store, by lease — fires
// each row once, at its due time, whether the instance is live,
// passivated, evicted or was active in a process that died; an instance
// waiting only for timers need not stay in memory. A dispatched command
// is guarded by such a row too: if no outcome comes within the runtime's
// CommandTimeout, the command is dispatched again (its command id, derived
// from the instance and the step, makes that idempotent). Nothing scans
// instances on start-up. A timer that was cancelled, or fires after the
// saga ended, never reaches Handle. Timers use the runtime's clock: tests
// drive them with a manual clock.
//
// # Compensation and supervision
//
// A [Command] may carry a compensation. When Handle decides to Compensate,
// the compensations of the steps that succeeded are dispatched one after
// another, newest first, and the saga then ends as Failed with the reason.
//
// A saga supervises its steps. A dispatched command that fails transiently
// is retried with back-off ([Command].Retries); a failure that remains is
// reported to Handle, skipped, stops the saga, compensates, or parks the
// instance ([FailurePolicy]). A failure of the saga's own code — an error
// or panic in Handle — is logged and fails, compensates or parks the
// instance ([ErrorPolicy]); it never rolls back silently. A parked
// instance ([Parked]) records why, dispatches nothing and defers its
// inputs until [Saga.Resume] takes it on where it stopped; [Saga.Parked]
// lists parked instances.
//
// Sagas carry the state they need in their own events; they never query
// projections, which may lag.
package saga

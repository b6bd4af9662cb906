// Package projection builds read models from the event store's global
// feed.
//
// A [Projection] is a named [Handler] of events that writes to a read model
// through a store's transaction. A [Runner] feeds it: it reads the feed
// from the projection's checkpoint (catching up with the history, then
// following new events), hands batches to the [Store], which applies them
// and moves the checkpoint atomically, and follows the projection's
// [FailurePolicy] when the handler fails. One runner per projection name is
// active across processes, by a lease; the others stand by.
//
// Because the writes and the checkpoint commit together and the stores skip
// events at or before the checkpoint, a crash or a replayed batch never
// applies an event twice nor loses one: the effect is exactly once.
//
// Operations: [Runner.Pause] and [Runner.Resume]; [Runner.Lag] (also the
// metric composable.projection.lag); [Runner.Rebuild], which builds a fresh
// generation alongside the live one and switches over atomically once it
// has caught up ([Rebuilder]); and read-your-writes with [Runner.WaitFor]:
// wait until the projection has applied the position a command returned.
//
// Stores: projection/memory (tests), projection/postgres (same-transaction
// checkpoints, a separate read database if you like), projection/redis.
// Every store passes the conformance suite in projection/projectiontest.
package projection

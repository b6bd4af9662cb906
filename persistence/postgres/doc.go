// Package postgres is the PostgreSQL event store: a
// [persistence.EventStore], [persistence.SnapshotStore] and
// [persistence.Notifier] on pgx v5, passing the conformance suite in
// persistence/storetest.
//
// # Schema
//
// [New] applies the embedded, versioned migrations in migrations/ to the
// configured schema (default "composable"), under a session advisory lock so
// that processes starting at once apply each migration exactly once. The
// events table has the global position as primary key, a unique
// (stream_id, version) key — the optimistic-concurrency guard — and a
// unique event_id; the snapshots table keeps one row per stream.
//
// # Group commit
//
// Every Append goes through the store's single writer goroutine, which takes
// everything queued (up to [WithMaxBatchEvents]) and commits it in one
// transaction, usually in one round trip. Each caller still gets its own
// outcome: a request whose expected version or event id conflicts is refused
// alone, and never fails its batch-mates. A caller returns only after the
// transaction committed (with synchronous_commit on, after it is durable).
// [Store.AppendAsync] queues the same way but returns at once; the writer
// calls back with the outcome, so the caller need not hold a goroutine
// while the transaction runs.
//
// # The global feed is gap-free
//
// Sequence-assigned positions are not enough: transactions commit out of
// order, so a reader could pass position 11 while 10 is uncommitted and
// never see it. This store uses the single-ordered-writer fix, enforced
// across processes: each append transaction takes a transaction-scoped
// advisory lock before numbering its rows after the current head, and holds
// it until COMMIT completes. Positions therefore become visible strictly in
// order, and ReadAll is a plain ordered read. A rolled-back transaction
// simply never numbered anything, so readers never wait on it. The cost is
// that appends to one schema commit one transaction at a time — which group
// commit turns into batches. All writes must go through the store.
//
// # Failure
//
// An append transaction that fails before COMMIT wrote nothing; the writer
// retries it on a new connection, then request by request. If the connection
// breaks during COMMIT the outcome is unknown: the callers get an error
// matching [ErrCommitUnknown] and should retry with the same event ids —
// [persistence.ErrDuplicateEvent] then means the first attempt committed.
// LISTEN/NOTIFY is only a wake-up hint for subscribers; they poll anyway.
package postgres

// Package persistence defines the event store contracts every backend
// implements — [EventStore], [SnapshotStore] and the optional [Notifier] —
// with their errors, the input rules all stores share ([ValidateAppend]),
// catch-up subscriptions over the global feed ([Subscribe]), and the codec
// [Registry] that maps event type names to Go types and upcasts old
// versions.
//
// Backends live in subpackages: persistence/memory (in-process, for tests
// and local development) and persistence/postgres. Both pass the
// conformance suite in persistence/storetest.
package persistence

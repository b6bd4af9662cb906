// Package bus carries recorded events between services: [Publisher] and
// [Subscriber] with consumer groups, the [Retry] policy with dead letters
// that every subscriber applies, and error classification ([Permanent],
// [IsRetryable]).
//
// Delivery is at-least-once: a message is acknowledged only after its
// handler returned nil, so after a crash or a rebalance it may be delivered
// again. Handlers deduplicate by event id or (stream, version) — see the
// idempotent consumer in bus/postgres. Messages of one key (a stream) are
// delivered in order, one at a time.
//
// Backends: bus/memory (in-process, for tests and local development) and
// bus/kafka (sarama; Kafka or Redpanda). Both pass the conformance suite in
// bus/bustest. The relay that publishes the event store's feed — the event
// log is the outbox — is in bus/relay.
package bus

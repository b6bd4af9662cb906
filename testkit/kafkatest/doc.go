// Package kafkatest runs an in-process Kafka cluster for a test, so Kafka
// clients can be tested over real TCP without a Kafka server.
//
// [Start] runs a [kfake] cluster — a broker written in Go that speaks the
// Kafka wire protocol, with consumer groups, committed offsets, idempotent
// and transactional producers — on free ports of 127.0.0.1 and stops it at
// the test's cleanup:
//
//	b := kafkatest.Start(t, kafkatest.Topic("orders", 3))
//	producer, err := sarama.NewSyncProducer(b.Addrs(), cfg)
//
// Seed topics with [Topic], run several brokers with [Brokers] (partition
// leaders and group coordinators then live on different brokers, as in
// production), create topics later with [Broker.CreateTopic], read a
// group's commits with [Broker.Committed] and wait for a rebalance with
// [Broker.WaitGroupStable]. Anything else kfake offers (fault injection,
// SASL, ACLs) is reachable through [ClusterOptions] and [Broker.Cluster].
//
// # Same client configuration as production
//
// Production points the same sarama configuration at Kafka or Redpanda;
// only the addresses differ. The tests of this package prove sarama with
// Version V3_6_0_0, an idempotent producer (acks=all, one request in flight)
// and consumer groups (eager and cooperative) against kfake; sarama limits
// each request to the versions the broker advertises. Where timing differs
// from a production broker: kfake starts a group's first generation at
// once, where Kafka waits group.initial.rebalance.delay.ms (3 s by
// default); and like Kafka it rejects group session timeouts under 6 s
// (its maximum is 5 min; see [kfake.GroupMinSessionTimeout]). Like Kafka
// it answers a fetch that finds no new data only after the consumer's
// MaxWaitTime, and sarama sends heartbeats and offset commits to a broker
// on the same connection as its fetches, after any fetch in flight. Tests
// that need fast rebalances and commits therefore lower sarama's
// Consumer.MaxWaitTime and Consumer.Group.Heartbeat.Interval (to about
// 100 ms), not the session timeout.
//
// # Lifecycle
//
// Everything Start runs stops at cleanup. Cleanups run last-registered
// first, so clients that a test creates after Start and closes with
// t.Cleanup close before the cluster. Close clients the test closes
// itself before it returns, and let their Consume loops return first so
// that their final offset commits reach the cluster. Once stopped, the
// cluster refuses connections and the [Broker] methods fail with
// [ErrStopped] or fail the test.
package kafkatest

package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Option configures the cluster that [Start] runs.
type Option func(*config)

type config struct {
	brokers int
	topics  []topic
	extra   []kfake.Opt
}

type topic struct {
	name       string
	partitions int32
}

// Topic seeds the cluster with a topic of the given number of partitions,
// created before [Start] returns. A partitions below 1 means the cluster
// default of 10. The option may be given many times; a topic named twice
// takes the last partition count.
func Topic(name string, partitions int32) Option {
	return func(c *config) { c.topics = append(c.topics, topic{name, partitions}) }
}

// Brokers sets how many brokers the cluster runs, each on its own loopback
// port, overriding the default of 1. Partition leaders and group
// coordinators are spread across them, so clients exercise the multi-broker
// paths (metadata, leader routing, FindCoordinator) they take in production.
func Brokers(n int) Option {
	return func(c *config) { c.brokers = n }
}

// ClusterOptions passes options straight to [kfake.NewCluster], after the
// ones [Start] derives from the other options, for what this package does
// not wrap: fault injection, SASL, ACLs, group session timeout bounds
// ([kfake.GroupMinSessionTimeout]) and so on. Options that choose listen
// addresses ([kfake.Ports], [kfake.ListenFn]) defeat the free-port
// guarantee of [Start].
func ClusterOptions(opts ...kfake.Opt) Option {
	return func(c *config) { c.extra = append(c.extra, opts...) }
}

// Broker is an in-process Kafka cluster serving one test. Its methods are
// safe for concurrent use; once the test's cleanup has stopped the cluster
// they fail (with [ErrStopped]) instead of blocking.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string

	mu     sync.RWMutex
	closed bool
}

// Start runs a Kafka-protocol cluster ([kfake]) in-process, listening on
// free ports of 127.0.0.1, and stops it when the test and its subtests have
// finished. Cleanups run in reverse order, so clients created after Start
// and closed with t.Cleanup are closed before the cluster; close clients
// the test closes itself before it returns.
//
// Start fails the test if the cluster cannot start.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	cfg := config{brokers: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.brokers < 1 {
		t.Fatalf("kafkatest: Brokers(%d): need at least one broker", cfg.brokers)
	}
	kopts := []kfake.Opt{kfake.NumBrokers(cfg.brokers)}
	for _, tp := range cfg.topics {
		kopts = append(kopts, kfake.SeedTopics(tp.partitions, tp.name))
	}
	kopts = append(kopts, cfg.extra...)
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		t.Fatalf("kafkatest: start cluster: %v", err)
	}
	b := &Broker{cluster: c, addrs: c.ListenAddrs()}
	t.Cleanup(b.close)
	return b
}

func (b *Broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	b.cluster.Close()
}

// ErrStopped is returned by [Broker] methods called after the test's
// cleanup stopped the cluster.
var ErrStopped = errors.New("kafkatest: cluster stopped")

// use runs fn on the open cluster. It refuses once the cluster is stopped
// because kfake's administrative calls then block forever.
func (b *Broker) use(fn func(c *kfake.Cluster)) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrStopped
	}
	fn(b.cluster)
	return nil
}

// Addrs returns the brokers' host:port addresses, for example to pass to
// sarama.NewClient. Every broker is listed, so any of them bootstraps a
// client. The slice is a copy.
func (b *Broker) Addrs() []string {
	return append([]string(nil), b.addrs...)
}

// CreateTopic creates a topic of the given number of partitions (below 1:
// the cluster default of 10), as an admin's CreateTopics request would,
// failing t if it cannot (for example, when the topic exists). Clients
// learn of the topic on their next metadata refresh.
func (b *Broker) CreateTopic(t testing.TB, name string, partitions int32) {
	t.Helper()
	var err error
	if uerr := b.use(func(c *kfake.Cluster) { err = c.CreateTopic(name, partitions, nil) }); uerr != nil {
		err = uerr
	}
	if err != nil {
		t.Fatalf("kafkatest: create topic %s: %v", name, err)
	}
}

// Committed returns the offsets the consumer group has committed for topic,
// by partition: the offset of the next record the group will read. It is
// empty when the group has committed nothing for topic. It reads the
// cluster's state directly, not through a client, so it sees a commit as
// soon as the broker has accepted it.
func (b *Broker) Committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	out := make(map[int32]int64)
	err := b.use(func(c *kfake.Cluster) {
		gi := c.GroupInfo(group)
		if gi == nil {
			return
		}
		for p, gc := range gi.Commits[topic] {
			out[p] = gc.Offset
		}
	})
	if err != nil {
		t.Fatalf("kafkatest: commits of group %s: %v", group, err)
	}
	return out
}

// WaitGroupStable waits until the consumer group is stable (a rebalance has
// completed) with the given number of members, or with any number when
// members is negative. It returns ctx's error if that does not happen
// before ctx is done, and [ErrStopped] after cleanup. The cluster's cleanup
// waits for a WaitGroupStable in progress, so bound ctx.
func (b *Broker) WaitGroupStable(ctx context.Context, group string, members int) error {
	var err error
	if uerr := b.use(func(c *kfake.Cluster) { _, err = c.WaitGroupStable(ctx, group, members) }); uerr != nil {
		return uerr
	}
	if err != nil {
		return fmt.Errorf("kafkatest: wait for group %s with %d members: %w", group, members, err)
	}
	return nil
}

// Cluster returns the underlying kfake cluster, for fault injection
// ([kfake.Cluster.ControlKey]), partition moves and the other controls kfake
// offers. It must not be closed directly, and its methods block forever once
// the test's cleanup has stopped it.
func (b *Broker) Cluster() *kfake.Cluster {
	return b.cluster
}

// SaramaConfig returns a sarama configuration tuned for tests against the
// in-process broker: version 3.6 and quick group operations (sarama sends
// group requests on the connection a fetch occupies for up to
// Consumer.MaxWaitTime, so that bounds rebalances and commits). Production
// keeps sarama's slower defaults.
func SaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second // the broker's minimum
	cfg.Consumer.Group.Rebalance.Timeout = 5 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	cfg.Net.ReadTimeout = 2 * cfg.Consumer.Group.Rebalance.Timeout
	return cfg
}

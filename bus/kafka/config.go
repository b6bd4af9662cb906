package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus"
)

// Config describes a Kafka bus. Brokers is required; everything else has a
// production default.
type Config struct {
	// Brokers are the bootstrap addresses (host:port) of the Kafka or
	// Redpanda cluster.
	Brokers []string
	// ClientID names this client to the brokers. Default "composable".
	ClientID string
	// Retry says what consumers do with failing deliveries; see
	// [bus.Retry]. Default: the zero Retry.
	Retry bus.Retry
	// Partitions and ReplicationFactor are used by CreateTopics. Defaults
	// 12 and 1.
	Partitions        int32
	ReplicationFactor int16
	// CommitInterval is how often marked offsets are committed. Default 1s.
	CommitInterval time.Duration
	// Logger receives consumer-group errors that are retried. Default
	// [slog.Default].
	Logger *slog.Logger
	// Sarama, when set, is the base sarama configuration; the bus then
	// enforces only what its guarantees need (idempotent producer,
	// acks=all, manual marking, oldest initial offset).
	Sarama *sarama.Config
}

// ErrInvalidConfig is matched by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("kafka bus: invalid config")

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, fmt.Errorf("%w: Brokers is required", ErrInvalidConfig))
	}
	if c.Partitions < 0 || c.ReplicationFactor < 0 || c.CommitInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: negative Partitions, ReplicationFactor or CommitInterval", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// sarama builds the client configuration.
//
// Consumers mark offsets after their handler succeeded and let the offset
// manager commit them every CommitInterval and when a partition is revoked
// or the consumer closes. They never commit synchronously per message:
// sarama sends commits on the connection a fetch occupies for up to
// Consumer.MaxWaitTime, so a commit per message crawls (see docs/event-bus.md).
func (c Config) sarama() (*sarama.Config, error) {
	cfg := c.Sarama
	if cfg == nil {
		cfg = sarama.NewConfig()
		cfg.Version = sarama.V3_6_0_0
		cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
		cfg.Consumer.Group.Heartbeat.Interval = time.Second
		cfg.Consumer.Group.Rebalance.Timeout = 30 * time.Second
		cfg.Net.ReadTimeout = 2 * cfg.Consumer.Group.Rebalance.Timeout
	}
	cfg.ClientID = c.ClientID
	if cfg.ClientID == "" {
		cfg.ClientID = "composable"
	}
	// Idempotent producer, acks=all: sarama requires one request in flight
	// and retries.
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = max(cfg.Producer.Retry.Max, 5)
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	// Consumers: from the oldest message for a new group; marked offsets
	// committed in the background.
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	if cfg.Consumer.Offsets.AutoCommit.Interval == 0 {
		cfg.Consumer.Offsets.AutoCommit.Interval = time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: sarama: %w", ErrInvalidConfig, err)
	}
	return cfg, nil
}

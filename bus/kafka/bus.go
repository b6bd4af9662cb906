// Package kafka is the [bus.Publisher] and [bus.Subscriber] on Kafka or
// Redpanda, with IBM/sarama. Tests and local development use an in-process
// Kafka-protocol broker (testkit/kafkatest); production points Brokers at
// the real cluster with the same configuration.
//
// Messages carry the event's data as their value and the stream id as their
// key, so each stream stays in one partition and in order; the event's id,
// type, schema version, stream, version, global position, recorded time and
// metadata travel in headers. The producer is idempotent with acks=all.
// Consumers use consumer groups, mark an offset only after the handler
// succeeded (or the message was dead-lettered), and commit marked offsets
// in batches and when partitions are revoked.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus"
)

// Bus is a Kafka bus. It is safe for concurrent use; Close it when done.
type Bus struct {
	cfg      Config
	sarama   *sarama.Config
	producer sarama.SyncProducer

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // publishes and subscriptions in flight
}

var (
	_ bus.Publisher  = (*Bus)(nil)
	_ bus.Subscriber = (*Bus)(nil)
)

// ErrClosed is returned by a closed Bus.
var ErrClosed = errors.New("kafka bus: closed")

// New connects the producer. ctx bounds the connection attempt.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc, err := cfg.sarama()
	if err != nil {
		return nil, err
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 12
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 1
	}
	type result struct {
		p   sarama.SyncProducer
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := sarama.NewSyncProducer(cfg.Brokers, sc)
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("kafka bus: connect %v: %w", cfg.Brokers, r.err)
		}
		return &Bus{cfg: cfg, sarama: sc, producer: r.p}, nil
	case <-ctx.Done():
		go func() { // the connect goroutine ends on its own; close what it made
			if r := <-ch; r.p != nil {
				_ = r.p.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// enter registers an operation, unless the bus is closed.
func (b *Bus) enter() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.wg.Add(1)
	return nil
}

// Publish implements [bus.Publisher]: it returns once every message was
// acknowledged by all in-sync replicas. If ctx ends first it returns ctx's
// error; the send completes in the background.
func (b *Bus) Publish(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	pms := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("%w: message %d has no topic", bus.ErrInvalidMessage, i)
		}
		pms[i] = encode(m)
	}
	return b.send(ctx, pms)
}

func (b *Bus) send(ctx context.Context, pms []*sarama.ProducerMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.enter(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		defer b.wg.Done()
		done <- b.producer.SendMessages(pms)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka bus: publish: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CreateTopics creates topics that do not exist yet, with the configured
// partitions and replication factor.
func (b *Bus) CreateTopics(ctx context.Context, topics ...string) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.wg.Done()
	admin, err := sarama.NewClusterAdmin(b.cfg.Brokers, b.sarama)
	if err != nil {
		return fmt.Errorf("kafka bus: admin: %w", err)
	}
	defer admin.Close()
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: b.cfg.Partitions, ReplicationFactor: b.cfg.ReplicationFactor}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("kafka bus: create topic %q: %w", t, err)
		}
	}
	return nil
}

// Close stops accepting work, waits for publishes and subscriptions to end
// (subscriptions end with their context), and closes the producer. It is
// idempotent.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
	return b.producer.Close()
}

// Subscribe implements [bus.Subscriber] with a sarama consumer group.
func (b *Bus) Subscribe(ctx context.Context, group string, topics []string, h bus.Handler) error {
	if group == "" || len(topics) == 0 || h == nil {
		return fmt.Errorf("%w: a group, topics and a handler are required", bus.ErrInvalidMessage)
	}
	if err := b.enter(); err != nil {
		return err
	}
	defer b.wg.Done()
	cg, err := sarama.NewConsumerGroup(b.cfg.Brokers, group, b.sarama)
	if err != nil {
		return fmt.Errorf("kafka bus: join group %q: %w", group, err)
	}
	errs := make(chan error, 1)
	var drain sync.WaitGroup
	drain.Add(1)
	go func() { // the group's asynchronous errors; the last one is reported if Consume fails
		defer drain.Done()
		for err := range cg.Errors() {
			select { // keep only the latest
			case old := <-errs:
				_ = old
			default:
			}
			errs <- err
		}
	}()
	handler := &groupHandler{bus: b, group: group, h: h}
	var runErr error
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, topics, handler); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				break
			}
			runErr = fmt.Errorf("kafka bus: consume %v as %q: %w", topics, group, err)
			if !sleep(ctx, time.Second) { // a transient group error: rejoin
				break
			}
			runErr = nil
		}
	}
	closeErr := cg.Close() // commits marked offsets, leaves the group
	drain.Wait()
	if runErr != nil {
		return runErr
	}
	if closeErr != nil && ctx.Err() == nil {
		return fmt.Errorf("kafka bus: close group %q: %w", group, closeErr)
	}
	return nil
}

// groupHandler delivers a claim's messages one at a time, in order.
type groupHandler struct {
	bus   *Bus
	group string
	h     bus.Handler
}

func (g *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (g *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim marks each message only once it was handled or
// dead-lettered; a message that can be neither is retried in place, so
// nothing after it is marked either. When the claim ends (revoke, close)
// the marked offsets are committed.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	defer sess.Commit()
	ctx := sess.Context()
	retry := g.bus.cfg.Retry
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			d, decodeErr := decode(msg)
			h := g.h
			if decodeErr != nil { // a message we cannot read will not get better
				h = func(context.Context, bus.Delivery) error {
					return bus.Permanent(fmt.Errorf("decode: %w", decodeErr))
				}
			}
			backoff := 100 * time.Millisecond
			for {
				err := retry.Deliver(ctx, g.group, d, h, g.bus.deadLetter)
				if err == nil {
					sess.MarkMessage(msg, "")
					break
				}
				if ctx.Err() != nil {
					return nil // revoked: the next owner gets it again
				}
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, 10*time.Second)
			}
		}
	}
}

func (b *Bus) deadLetter(ctx context.Context, d bus.Delivery, info bus.DeadLetterInfo) error {
	topic := b.cfg.Retry.DeadLetterTopicFor(d.Topic)
	return b.send(ctx, []*sarama.ProducerMessage{deadLetterMessage(topic, d, info)})
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

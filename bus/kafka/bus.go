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
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Bus is a Kafka bus. It is safe for concurrent use; Close it when done.
type Bus struct {
	cfg      Config
	sarama   *sarama.Config
	producer sarama.SyncProducer
	done     context.Context // ends at Close: stops subscriptions
	stop     context.CancelFunc

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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
		done, stop := context.WithCancel(context.Background())
		return &Bus{cfg: cfg, sarama: sc, producer: r.p, done: done, stop: stop}, nil
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
			return bus.Permanent(fmt.Errorf("%w: message %d has no topic", bus.ErrInvalidMessage, i))
		}
		if !bus.LegalTopic(m.Topic) {
			return bus.Permanent(fmt.Errorf("%w: message %d (%s): topic %s is not a legal Kafka topic name",
				bus.ErrInvalidMessage, i, persistence.Quote(m.Event.ID), persistence.Quote(m.Topic)))
		}
		pms[i] = encode(m)
		// sarama sends each message on its own: one the broker must refuse
		// would let later messages of its key through. Refuse the batch.
		if size := pms[i].ByteSize(2); size > b.sarama.Producer.MaxMessageBytes {
			return bus.Permanent(fmt.Errorf("%w: message %d (%s) is %d bytes, the producer's limit is %d",
				bus.ErrInvalidMessage, i, m.Event.ID, size, b.sarama.Producer.MaxMessageBytes))
		}
	}
	return b.send(ctx, pms)
}

// CheckEvent is a [persistence.EventCheck]: it refuses, with an error
// matching persistence.ErrEventTooLarge, an event of stream whose record
// on this bus — its data, its metadata as headers, the framework's headers
// with the largest version, position and time they can hold — would be
// over the producer's MaxMessageBytes. Give it to the event store
// (postgres.WithEventCheck(b.CheckEvent)) so that the store refuses at
// append what the relay could never publish, instead of the relay
// dead-lettering it.
func (b *Bus) CheckEvent(stream string, e persistence.EventData) error {
	size := encode(bus.Message{Key: stream, Event: persistence.RecordedEvent{
		EventData: e, StreamID: stream, Version: math.MaxInt64, GlobalPosition: math.MaxInt64,
		RecordedAt: time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC), // the longest RFC 3339 time a store keeps
	}}).ByteSize(2)
	if limit := b.sarama.Producer.MaxMessageBytes; size > limit {
		return fmt.Errorf("%w: its Kafka record would be %d bytes with its headers, the producer's limit is %d", persistence.ErrEventTooLarge, size, limit)
	}
	return nil
}

// refusedForGood reports whether the broker refused every message of a
// failed send for a reason no retry cures: too large for the topic, an
// invalid topic, a record it cannot take.
func refusedForGood(err error) bool {
	var pes sarama.ProducerErrors
	if !errors.As(err, &pes) || len(pes) == 0 {
		return false
	}
	for _, pe := range pes {
		var kerr sarama.KError
		if !errors.As(pe.Err, &kerr) {
			return false
		}
		switch kerr {
		// Not ErrInvalidMessage (CORRUPT_MESSAGE): a record damaged on the
		// way, which Kafka retries.
		case sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidTopic, sarama.ErrInvalidRecord:
		default:
			return false
		}
	}
	return true
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
		if err == nil {
			return nil
		}
		err = fmt.Errorf("kafka bus: publish: %w", err)
		if refusedForGood(err) {
			return bus.Permanent(err)
		}
		return err
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

// Close stops accepting work, ends running subscriptions (as if their
// contexts ended), waits for them and for publishes in flight, and closes
// the producer. It is idempotent.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.stop()
	b.wg.Wait()
	return b.producer.Close()
}

// Subscribe implements [bus.Subscriber] with a sarama consumer group. Group
// errors that a rejoin may cure are logged and retried; a topic that does
// not exist, or authorisation failures, end the subscription with an error.
func (b *Bus) Subscribe(ctx context.Context, group string, topics []string, h bus.Handler) error {
	if group == "" || len(topics) == 0 || h == nil {
		return fmt.Errorf("%w: a group, topics and a handler are required", bus.ErrInvalidMessage)
	}
	if err := b.enter(); err != nil {
		return err
	}
	defer b.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWithBus := context.AfterFunc(b.done, cancel)
	defer stopWithBus()

	cg, err := sarama.NewConsumerGroup(b.cfg.Brokers, group, b.sarama)
	if err != nil {
		return fmt.Errorf("kafka bus: join group %q: %w", group, err)
	}
	var drain sync.WaitGroup
	drain.Add(1)
	go func() { // the group's asynchronous errors (failed commits, say)
		defer drain.Done()
		for err := range cg.Errors() {
			b.cfg.Logger.Warn("kafka bus: consumer group error", "group", group, "error", err)
		}
	}()
	handler := &groupHandler{bus: b, group: group, h: h}
	var runErr error
	for ctx.Err() == nil {
		err := cg.Consume(ctx, topics, handler)
		if err == nil || errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
			continue
		}
		if fatal(err) {
			runErr = fmt.Errorf("kafka bus: consume %v as %q: %w", topics, group, err)
			break
		}
		b.cfg.Logger.Warn("kafka bus: consume failed; rejoining", "group", group, "topics", topics, "error", err)
		sleep(ctx, time.Second)
	}
	_ = cg.Close() // commits marked offsets, leaves the group
	drain.Wait()
	return runErr
}

// fatal reports group errors a rejoin cannot cure.
func fatal(err error) bool {
	for _, kerr := range []sarama.KError{
		sarama.ErrUnknownTopicOrPartition, sarama.ErrTopicAuthorizationFailed,
		sarama.ErrGroupAuthorizationFailed, sarama.ErrClusterAuthorizationFailed,
		sarama.ErrInvalidTopic,
	} {
		if errors.Is(err, kerr) {
			return true
		}
	}
	return false
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
// nothing after it is marked either. The claim has its own context, which
// ends when the session does or when the claim is revoked — with
// cooperative rebalancing sarama only closes the claim's channel — so a
// message being retried lets go of a revoked partition at once. When the
// claim ends, the marked offsets are committed.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	defer sess.Commit()
	ctx, cancel := context.WithCancel(sess.Context())
	msgs := make(chan *sarama.ConsumerMessage)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel() // the channel closed: the claim is over
		for {
			select {
			case m, ok := <-claim.Messages():
				if !ok {
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	retry := g.bus.cfg.Retry
	for {
		var msg *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return nil
		case msg = <-msgs:
		}
		d, decodeErr := decode(msg)
		h := g.h
		if decodeErr != nil { // a message we cannot read will not get better
			h = func(context.Context, bus.Delivery) error {
				return bus.Permanent(fmt.Errorf("decode: %w", decodeErr))
			}
		}
		deadLetter := func(ctx context.Context, _ bus.Delivery, info bus.DeadLetterInfo) error {
			topic := retry.DeadLetterTopicFor(msg.Topic)
			pm := deadLetterMessage(topic, msg, info, g.bus.sarama.Producer.MaxMessageBytes)
			err := g.bus.send(ctx, []*sarama.ProducerMessage{pm})
			if err != nil && ctx.Err() == nil {
				// Retried until it goes (the partition waits): say so.
				g.bus.cfg.Logger.Error("kafka bus: dead-letter publish failed; retrying", "group", g.group, "topic", msg.Topic,
					"partition", msg.Partition, "offset", msg.Offset, "dead-letter topic", topic, "error", err)
			}
			return err
		}
		for {
			err := retry.Deliver(ctx, g.group, d, h, deadLetter)
			if err == nil {
				sess.MarkMessage(msg, "")
				break
			}
			if !sleep(ctx, time.Second) { // revoked: the next owner gets it again
				return nil
			}
		}
	}
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

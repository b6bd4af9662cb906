package kafka_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/kafkatest"
)

// Consumer throughput of the bus next to a raw sarama consumer group, in
// the same run, over the in-process broker:
//
//	go test -run '^$' -bench . -benchtime 20000x ./bus/kafka/
//
// Both read b.N messages (200 bytes, 8 headers) produced beforehand; the
// bus decodes every message and runs the retry policy around a no-op
// handler, the baseline only marks.

func benchMessages(topic string, n int) []bus.Message {
	msgs := make([]bus.Message, n)
	data := make([]byte, 200)
	for i := range msgs {
		stream := fmt.Sprint("order/", i%64)
		msgs[i] = bus.Message{Topic: topic, Key: stream, Event: persistence.RecordedEvent{
			EventData: persistence.EventData{ID: fmt.Sprint("e-", i), Type: "order.placed", SchemaVersion: 1, Data: data,
				Metadata: map[string]string{persistence.MetadataCorrelationID: "c-1"}},
			StreamID: stream, Version: int64(i/64 + 1), GlobalPosition: int64(i + 1), RecordedAt: time.Now(),
		}}
	}
	return msgs
}

func seedTopic(b *testing.B, n int) (*kafkatest.Broker, string) {
	broker := kafkatest.Start(b)
	bu := newBusTB(b, broker)
	topic := fmt.Sprint("bench-", time.Now().UnixNano())
	if err := bu.CreateTopics(context.Background(), topic); err != nil {
		b.Fatal(err)
	}
	msgs := benchMessages(topic, n)
	for len(msgs) > 0 {
		k := min(1000, len(msgs))
		if err := bu.Publish(context.Background(), msgs[:k]...); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[k:]
	}
	return broker, topic
}

func BenchmarkConsume(b *testing.B) {
	broker, topic := seedTopic(b, b.N)
	bu := newBusTB(b, broker)
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	go func() {
		done <- bu.Subscribe(ctx, "bench", []string{topic}, func(context.Context, bus.Delivery) error {
			if n.Add(1) == int64(b.N) {
				cancel()
			}
			return nil
		})
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cancel()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

type rawHandler struct {
	n      *atomic.Int64
	total  int64
	cancel context.CancelFunc
}

func (rawHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (rawHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h rawHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		if h.n.Add(1) == h.total {
			h.cancel()
		}
	}
	return nil
}

func BenchmarkBaselineSaramaConsume(b *testing.B) {
	broker, topic := seedTopic(b, b.N)
	cfg := testSarama()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cg, err := sarama.NewConsumerGroup(broker.Addrs(), "bench", cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer cg.Close()
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, rawHandler{n: &n, total: int64(b.N), cancel: cancel}); err != nil && ctx.Err() == nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
)

// Relay throughput, PostgreSQL feed to Kafka (the in-process broker), next
// to a raw sarama producer sending the same messages in the same batches,
// in the same run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./bus/relay/
//
// Events are 200 bytes with one metadata entry, over 64 streams; the relay
// reads, publishes (idempotent producer, acks=all) and checkpoints batches
// of 500.

const benchBatch = 500

func BenchmarkRelayPostgresToKafka(b *testing.B) {
	store, _, _, bu := pgKafkaB(b)
	data := make([]byte, 200)
	batch := make([]persistence.EventData, 0, 1000)
	for i := range b.N {
		batch = append(batch, persistence.EventData{ID: fmt.Sprint("e-", i), Type: "order.placed", Data: data,
			Metadata: map[string]string{persistence.MetadataCorrelationID: "c-1"}})
		if len(batch) == cap(batch) || i == b.N-1 {
			if _, err := store.Append(context.Background(), fmt.Sprint("order/", i%64), persistence.Any, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	r, err := relay.New(relay.Config{Store: store, Publisher: bu, Checkpoints: store, Lease: store, BatchSize: benchBatch, PollInterval: time.Millisecond, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testkit.Eventually(b, 5*time.Minute, func() bool { return r.Published() == int64(b.N) })
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkBaselineSaramaProduce(b *testing.B) {
	_, _, broker, _ := pgKafkaB(b)
	cfg := testSarama()
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(broker.Addrs(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	data := make([]byte, 200)
	msgs := make([]*sarama.ProducerMessage, 0, benchBatch)
	b.ResetTimer()
	for i := range b.N {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "events.order", Key: sarama.StringEncoder(fmt.Sprint("order/", i%64)),
			Value: sarama.ByteEncoder(data), Headers: []sarama.RecordHeader{
				{Key: []byte("event-id"), Value: []byte(fmt.Sprint("e-", i))}, {Key: []byte("event-type"), Value: []byte("order.placed")},
				{Key: []byte("meta-correlation-id"), Value: []byte("c-1")},
			}})
		if len(msgs) == benchBatch || i == b.N-1 {
			if err := p.SendMessages(msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

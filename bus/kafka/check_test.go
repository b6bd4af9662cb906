package kafka_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/kafka"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit/kafkatest"
)

// TestCheckEventAlignsTheStoreWithTheProducer: a store given the bus's
// CheckEvent accepts only events whose records the bus publishes. The
// largest event it accepts — metadata counted with its header keys and
// the duplicated correlation header — is published; one byte more is
// refused at append with ErrEventTooLarge, nothing written.
func TestCheckEventAlignsTheStoreWithTheProducer(t *testing.T) {
	broker := kafkatest.Start(t)
	broker.CreateTopic(t, "orders", 1)
	cfg := kafkatest.SaramaConfig()
	cfg.Producer.MaxMessageBytes = 4096
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := kafka.New(ctx, kafka.Config{Brokers: broker.Addrs(), Partitions: 1, Sarama: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	store := memory.New(memory.WithEventCheck(b.CheckEvent))
	const stream = "order/1"
	md := map[string]string{persistence.MetadataCorrelationID: strings.Repeat("c", 300), "tenant": "acme"}
	event := func(size int) persistence.EventData {
		return persistence.EventData{ID: "e", Type: "order.placed", SchemaVersion: 1, Data: []byte(strings.Repeat("x", size)), Metadata: md}
	}
	largest := sort.Search(4096, func(n int) bool { return b.CheckEvent(stream, event(n+1)) != nil })
	if largest < 2000 || largest >= 4096-300 {
		t.Fatalf("the largest event that fits has %d bytes of data", largest)
	}
	if _, err := store.Append(ctx, stream, persistence.NoStream, event(largest+1)); !errors.Is(err, persistence.ErrEventTooLarge) || !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("append of one byte more = %v, want ErrEventTooLarge", err)
	}
	if _, err := store.Load(ctx, stream, 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("a refused append wrote: %v", err)
	}
	if _, err := store.Append(ctx, stream, persistence.NoStream, event(largest)); err != nil {
		t.Fatal(err)
	}
	recorded, err := store.Load(ctx, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, bus.Message{Topic: "orders", Key: stream, Event: recorded[0]}); err != nil {
		t.Fatalf("the largest event the store accepted is refused by the bus: %v", err)
	}
}

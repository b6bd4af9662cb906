package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/bustest"
	"github.com/composable-go/composable/bus/kafka"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/kafkatest"
)

func TestMain(m *testing.M) {
	// go-metrics, which sarama uses, starts a process-wide ticker with the
	// first meter and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// testSarama is the sarama configuration for tests: quick rebalances.
func testSarama() *sarama.Config { return kafkatest.SaramaConfig() }

func newBusTB(t testing.TB, broker *kafkatest.Broker) *kafka.Bus {
	t.Helper()
	return newBus(t, broker, bus.Retry{})
}

func newBus(t testing.TB, broker *kafkatest.Broker, retry bus.Retry) *kafka.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := kafka.New(ctx, kafka.Config{
		Brokers: broker.Addrs(), Retry: retry, Partitions: 4,
		CommitInterval: 100 * time.Millisecond, Sarama: testSarama(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	broker := kafkatest.Start(t)
	bustest.Run(t, func(t *testing.T, r bus.Retry) bustest.Bus { return newBus(t, broker, r) })
}

// TestOversizedDeadLetterIsTruncated: a record just under the producer's
// limit fails for good; its dead letter, which would be over the limit,
// goes without the record's value, saying so — and the partition moves
// on to the next record.
func TestOversizedDeadLetterIsTruncated(t *testing.T) {
	broker := kafkatest.Start(t)
	cfg := testSarama()
	cfg.Producer.MaxMessageBytes = 16 << 10
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := kafka.New(ctx, kafka.Config{Brokers: broker.Addrs(), Partitions: 1, CommitInterval: 100 * time.Millisecond, Sarama: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.CreateTopics(ctx, "big", "big.dlq"); err != nil {
		t.Fatal(err)
	}
	msg := func(id string, size int) bus.Message {
		return bus.Message{Topic: "big", Key: "k", Event: persistence.RecordedEvent{EventData: persistence.EventData{
			ID: id, Type: "t", Data: []byte(strings.Repeat("x", size)), Metadata: map[string]string{"note": "n"}}, StreamID: "k", Version: 1, GlobalPosition: 7}}
	}
	if err := b.Publish(ctx, msg("near-limit", 16<<10-400)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, msg("after", 10)); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var handled []string
	var dead []bus.Delivery
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() {
		done <- b.Subscribe(subCtx, "g-big", []string{"big"}, func(_ context.Context, d bus.Delivery) error {
			if d.Event.ID == "near-limit" {
				return bus.Permanent(errors.New(strings.Repeat("refused ", 200)))
			}
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, d.Event.ID)
			return nil
		})
	}()
	go func() {
		done <- b.Subscribe(subCtx, "g-dlq", []string{"big.dlq"}, func(_ context.Context, d bus.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			dead = append(dead, d)
			return nil
		})
	}()
	testkit.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 1 && len(dead) == 1
	})
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	d := dead[0]
	if handled[0] != "after" || d.Event.ID != "near-limit" || d.Event.GlobalPosition != 7 || len(d.Event.Data) != 0 ||
		d.DeadLetter == nil || d.DeadLetter.Truncated == "" || len(d.DeadLetter.Error) > 1<<10 || d.DeadLetter.Topic != "big" {
		t.Fatalf("handled %v; dead letter %+v (%+v)", handled, d.Event, d.DeadLetter)
	}
}

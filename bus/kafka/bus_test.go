package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/bustest"
	"github.com/composable-go/composable/bus/kafka"
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

func TestLegalTopic(t *testing.T) {
	for name, want := range map[string]bool{
		"events.order": true, "a-b_c.D9": true, strings.Repeat("t", 249): true,
		"": false, ".": false, "..": false, "events.Order Service": false, "events/x": false,
		"événements": false, strings.Repeat("t", 250): false, "a\x00": false,
	} {
		if got := kafka.LegalTopic(name); got != want {
			t.Errorf("LegalTopic(%.20q) = %v, want %v", name, got, want)
		}
	}
}

package postgres_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/bus/kafka"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	evpostgres "github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/kafkatest"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestBusFedOverKafka runs the whole path with real parts: events appended
// to the PostgreSQL event store, published by the relay to a broker
// speaking the Kafka protocol over TCP, consumed by a bus-fed projection
// into a PostgreSQL read model. The relay is at-least-once and the events
// of different partitions interleave; the model holds each event once.
func TestBusFedOverKafka(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := ctxFor(t)
	events, err := evpostgres.New(ctx, pool, evpostgres.WithSchema(pgtest.Schema(t, pool, "projbus")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.Close() })
	broker := kafkatest.Start(t)
	broker.CreateTopic(t, "orders", 4)
	b, err := kafka.New(ctx, kafka.Config{
		Brokers: broker.Addrs(), Partitions: 4, CommitInterval: 100 * time.Millisecond,
		Sarama: kafkatest.SaramaConfig(), Logger: testkit.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s := newStore(t, pool)

	var appended []persistence.RecordedEvent
	for i := range 40 {
		stream := "order-" + strconv.Itoa(i%5)
		if _, err := events.Append(ctx, stream, persistence.Any, persistence.EventData{ID: "e" + strconv.Itoa(i), Type: "order.touched", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	if appended, err = events.ReadAll(ctx, 0, 100); err != nil {
		t.Fatal(err)
	}

	runRelayAndProjection(ctx, t, events, b, s, "bus_kafka")
	last := map[string]int64{}
	for _, e := range appended {
		last[e.StreamID] = e.Version
	}
	for stream, version := range last {
		if err := projection.WaitForStream(ctx, s, "bus_kafka", stream, version, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	got, want := counts(t, pool, s, "bus_kafka"), wantCounts(appended)
	if len(got) != len(want) {
		t.Fatalf("model %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("model %v, want %v", got, want)
		}
	}
}

// TestBusFedProjectionMovesPastARelayDeadLetter: an event too large for
// the producer is dead-lettered by the relay, which publishes a skip
// marker in its place; the bus-fed projection records the marker in its
// dead letters and applies the stream's later events instead of waiting
// for the missing version. Real parts, as above.
func TestBusFedProjectionMovesPastARelayDeadLetter(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := ctxFor(t)
	events, err := evpostgres.New(ctx, pool, evpostgres.WithSchema(pgtest.Schema(t, pool, "projskip")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.Close() })
	broker := kafkatest.Start(t)
	broker.CreateTopic(t, "orders", 2)
	broker.CreateTopic(t, "relay.dead-letters", 1)
	sc := kafkatest.SaramaConfig()
	sc.Producer.MaxMessageBytes = 4096
	b, err := kafka.New(ctx, kafka.Config{
		Brokers: broker.Addrs(), Partitions: 2, CommitInterval: 100 * time.Millisecond, Sarama: sc, Logger: testkit.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s := newStore(t, pool)
	for i, size := range []int{2, 8000, 2, 2} {
		data := []byte("{}")
		if size > 2 {
			data = []byte(`"` + strings.Repeat("x", size) + `"`)
		}
		if _, err := events.Append(ctx, "order-1", persistence.Any, persistence.EventData{ID: "e" + strconv.Itoa(i+1), Type: "order.touched", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	r := runRelayAndProjection(ctx, t, events, b, s, "bus_skip")
	if err := projection.WaitForStream(ctx, s, "bus_skip", "order-1", 4, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := counts(t, pool, s, "bus_skip"); got["order-1"] != 3 {
		t.Fatalf("model %v, want the three events that fit", got)
	}
	dl, err := s.DeadLetters(ctx, "bus_skip")
	if err != nil || len(dl) != 1 || dl[0].Event.ID != "e2" || dl[0].Event.Version != 2 || !strings.Contains(dl[0].Error, "relay passed the event over") {
		t.Fatalf("dead letters %+v (%v), want e2's marker", dl, err)
	}
	if r.DeadLettered() != 1 {
		t.Fatalf("the relay dead-lettered %d events, want 1", r.DeadLettered())
	}
}

// runRelayAndProjection runs, until the test ends, a relay from events to
// the topic "orders" of b, and a bus-fed counting projection name into s.
func runRelayAndProjection(ctx context.Context, t *testing.T, events *evpostgres.Store, b *kafka.Bus, s *postgres.Store, name string) *relay.Relay {
	t.Helper()
	r, err := relay.New(relay.Config{
		Store: events, Publisher: b, Checkpoints: events, Lease: events,
		Topic:        func(persistence.RecordedEvent) string { return "orders" },
		PollInterval: 10 * time.Millisecond, Logger: testkit.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := projection.BusHandler(s, counting(name, true, nil), projection.BusOptions{Logger: testkit.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- r.Run(runCtx) }()
	go func() { done <- b.Subscribe(runCtx, "projection."+name, []string{"orders"}, h) }()
	t.Cleanup(func() {
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	return r
}

package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable/bus/kafka"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/kafkatest"
	"github.com/composable-go/composable/testkit/pgtest"
)

// holdingStore is an event store whose appends to streams with prefix
// hang until release, then fail: a payment stuck mid-flight when its
// process stops.
type holdingStore struct {
	persistence.EventStore
	prefix  string
	held    chan struct{} // closed when the first append is held
	release chan struct{} // closed to let held appends fail
	once    sync.Once
	free    sync.Once
}

var errStoreStuck = errors.New("test: the payment's write never completed")

func newHoldingStore(store persistence.EventStore, prefix string) *holdingStore {
	return &holdingStore{EventStore: store, prefix: prefix, held: make(chan struct{}), release: make(chan struct{})}
}

// Append implements persistence.EventStore.
func (s *holdingStore) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	if !strings.HasPrefix(stream, s.prefix) {
		return s.EventStore.Append(ctx, stream, expected, events...)
	}
	s.once.Do(func() { close(s.held) })
	select {
	case <-s.release:
		return persistence.AppendResult{}, errStoreStuck
	case <-ctx.Done():
		return persistence.AppendResult{}, ctx.Err()
	}
}

// AppendWithTimers implements persistence.TimerStore, holding like Append.
func (s *holdingStore) AppendWithTimers(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange) (persistence.AppendResult, error) {
	if strings.HasPrefix(stream, s.prefix) {
		return s.Append(ctx, stream, expected, events...)
	}
	return s.EventStore.(persistence.TimerStore).AppendWithTimers(ctx, stream, expected, events, timers)
}

// Timers implements persistence.TimerStore.
func (s *holdingStore) Timers(ctx context.Context, owner string, after persistence.Timer, limit int) ([]persistence.Timer, error) {
	return s.EventStore.(persistence.TimerStore).Timers(ctx, owner, after, limit)
}

// DeleteTimer implements persistence.TimerStore.
func (s *holdingStore) DeleteTimer(ctx context.Context, t persistence.Timer) error {
	return s.EventStore.(persistence.TimerStore).DeleteTimer(ctx, t)
}

// Marks implements persistence.TimerStore.
func (s *holdingStore) Marks(ctx context.Context, owner, name, after string, limit int) ([]persistence.Timer, error) {
	return s.EventStore.(persistence.TimerStore).Marks(ctx, owner, name, after, limit)
}

// Appended passes the store's wake-up hint on, for the relay.
func (s *holdingStore) Appended() <-chan struct{} {
	if n, ok := s.EventStore.(persistence.Notifier); ok {
		return n.Appended()
	}
	return nil // no hint: subscribers poll
}

func (s *holdingStore) releaseAll() { s.free.Do(func() { close(s.release) }) }

// kafkaBus connects a Kafka bus to broker, with the topics the service
// uses, tuned for quick rebalances.
func kafkaBus(t *testing.T, broker *kafkatest.Broker) *kafka.Bus {
	t.Helper()
	kb, err := kafka.New(testContext(t), kafka.Config{
		Brokers: broker.Addrs(), Partitions: 4, CommitInterval: 100 * time.Millisecond,
		Sarama: kafkatest.SaramaConfig(), Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kb.Close() })
	if err := kb.CreateTopics(testContext(t), domainTopics()...); err != nil {
		t.Fatal(err)
	}
	return kb
}

// TestRestartResumesTheSaga stops the whole service — actor system,
// runtime, saga, relay, Kafka client — while the saga waits for its
// reservation and its charge is in flight, and starts a new one over the
// same PostgreSQL schema and Kafka broker. In the new process the charge is
// dispatched again, the reservation timer fires once at its recorded due
// time — a row the new scheduler reads — and the compensation leaves the order
// cancelled, the payment refunded once and the reservation released.
func TestRestartResumesTheSaga(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "checkout_example")
	broker := kafkatest.Start(t)
	ctx := testContext(t)
	pg, err := postgres.New(ctx, pool, postgres.WithSchema(schema), postgres.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() }) // after the services, before the schema is dropped
	clock := testkit.NewManualClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	durable := app.Backend{Store: pg, Checkpoints: pg, Lease: pg}

	// Process 1: the payment's write hangs.
	held := newHoldingStore(pg, paymentType+"/")
	be1 := durable
	be1.Store = held
	kb1 := kafkaBus(t, broker)
	svc1, err := openService(be1, kb1, settings{clock: clock, reservationTimeout: timeout, payments: defaultPayments, logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, stop1 := svc1.start(context.Background())
	t.Cleanup(func() { held.releaseAll(); _ = stop1() }) // if the test stops early

	sofa := PlaceOrder{Customer: "cy", SKU: "sofa", Quantity: 1, Amount: 450_00, Card: cardOK}
	if _, err := svc1.orders.Send(ctx, "1001", sofa); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reservation to wait for stock", func() bool { return waiting(ctx, svc1, "sofa", "1001") })
	select {
	case <-held.held:
	case <-ctx.Done():
		t.Fatal("the charge never reached the payment's store")
	}
	// The charge fails with the store; the saga would retry it after a
	// back-off on the manual clock, which does not move: it stays pending.
	held.releaseAll()
	if err := stop1(); err != nil {
		t.Fatalf("stop process 1: %v", err)
	}
	if err := kb1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamTypes(t, pg, "payment/1001"); got != nil {
		t.Fatalf("the payment moved before the restart: %q", got)
	}

	// Process 2: everything new over the same schema and broker.
	svc2 := startService(t, durable, kafkaBus(t, broker), clock)
	waitFor(t, "the pending charge to be dispatched again", func() bool {
		return checkout(ctx, t, svc2, "1001").State.Paid
	})
	clock.Advance(timeout)
	inst, err := svc2.awaitEnd(ctx, "1001", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != saga.Failed || inst.Reason != timedOut {
		t.Errorf("saga %s (%q), want failed (%q)", inst.Status, inst.Reason, timedOut)
	}
	want := map[string][]string{
		"order/1001":     {"order.placed", "order.cancelled"},
		"payment/1001":   {"payment.charged", "payment.refunded"},
		"inventory/sofa": {"inventory.reservation-pending", "inventory.released"},
	}
	for stream, types := range want {
		if diff := cmp.Diff(types, streamTypes(t, pg, stream)); diff != "" {
			t.Errorf("stream %s (-want +got):\n%s", stream, diff)
		}
	}
	count := map[string]int{}
	for _, typ := range streamTypes(t, pg, "saga-checkout/1001") {
		count[typ]++
	}
	if count["saga.timer-fired"] != 1 || count["saga.timer-scheduled"] != 1 {
		t.Errorf("timer armed %d and fired %d times, want once each", count["saga.timer-scheduled"], count["saga.timer-fired"])
	}
	// Step charge was dispatched once, by process 1, and sent again by
	// process 2 under the same command id.
	payment, err := pg.Load(ctx, "payment/1001", 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := payment[0].Metadata[persistence.MetadataCommandID]; id != saga.CommandID(checkoutType, "1001", stepCharge) || count["saga.dispatched"] != 5 {
		t.Errorf("charge command id %q, %d commands dispatched (want reserve, charge, cancel-order, 2 undos)", id, count["saga.dispatched"])
	}
}

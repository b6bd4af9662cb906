package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/composable-go/composable/bus"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/memory"
)

// A projection counting orders per customer, kept by a runner, queried
// after waiting for a command's position (read-your-writes).
func Example() {
	ctx := context.Background()
	events := evmemory.New() // the event store: the runner reads its global feed
	models := memory.New()   // the read models

	orders := projection.Projection[*memory.Tx]{
		Name: "orders_per_customer",
		Handle: func(_ context.Context, tx *memory.Tx, e persistence.RecordedEvent) error {
			if e.Type != "order.placed" {
				return nil // not this projection's business
			}
			customer := e.Metadata["customer"]
			n, _ := tx.Get(customer)
			count, _ := n.(int)
			tx.Put(customer, count+1)
			return nil
		},
	}
	runner, err := projection.NewRunner(events, models, orders, projection.Options{
		Lease:  evmemory.NewLeases(), // one active runner per projection
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	var last persistence.AppendResult
	for i, customer := range []string{"ada", "grace", "ada"} {
		last, err = events.Append(ctx, fmt.Sprintf("order/%d", i), persistence.NoStream, persistence.EventData{
			ID: fmt.Sprintf("placed-%d", i), Type: "order.placed", Data: []byte("{}"),
			Metadata: map[string]string{"customer": customer},
		})
		if err != nil {
			panic(err)
		}
	}
	if err := runner.WaitFor(ctx, last.Position); err != nil { // read your writes
		panic(err)
	}
	ada, _ := models.Get("orders_per_customer", "ada")
	grace, _ := models.Get("orders_per_customer", "grace")
	fmt.Println("ada:", ada, "grace:", grace)

	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output: ada: 2 grace: 1
}

// A projection fed from the bus rather than the event store's feed:
// deliveries deduplicated by stream version, read-your-writes by version.
func ExampleBusHandler() {
	ctx, stop := context.WithCancel(context.Background())
	b := busmemory.New()
	models := memory.New()
	orders := projection.Projection[*memory.Tx]{
		Name: "order_count",
		Handle: func(_ context.Context, tx *memory.Tx, e persistence.RecordedEvent) error {
			n, _ := tx.Get("orders")
			count, _ := n.(int)
			tx.Put("orders", count+1)
			return nil
		},
	}
	h, err := projection.BusHandler(models, orders, projection.BusOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Subscribe(ctx, "projection.order_count", []string{"orders"}, h) }()

	placed := persistence.RecordedEvent{
		EventData: persistence.EventData{ID: "placed-1", Type: "order.placed", Data: []byte("{}")},
		StreamID:  "order/1", Version: 1, GlobalPosition: 1,
	}
	// At-least-once: the relay may publish an event twice.
	msg := bus.Message{Topic: "orders", Key: placed.StreamID, Event: placed}
	if err := b.Publish(ctx, msg, msg); err != nil {
		panic(err)
	}
	if err := projection.WaitForStream(ctx, models, "order_count", "order/1", 1, time.Millisecond); err != nil {
		panic(err)
	}
	n, _ := models.Get("order_count", "orders")
	fmt.Println("orders:", n)

	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output: orders: 1
}

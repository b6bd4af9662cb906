package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/composable-go/composable"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/saga"
)

// BenchmarkCheckoutInMemory measures one whole checkout on the happy path
// with in-memory parts and the wall clock: PlaceOrder, the relay and the
// bus carrying OrderPlaced to the saga, Reserve and Charge, Reserved back
// over the bus, ConfirmOrder, and the saga's end — one checkout at a time,
// so ms/op is the latency of the workflow.
func BenchmarkCheckoutInMemory(b *testing.B) {
	svc, err := openService(app.Memory(), busmemory.New(), settings{
		clock: composable.SystemClock(), reservationTimeout: time.Hour, payments: defaultPayments, logger: quiet(),
	})
	if err != nil {
		b.Fatal(err)
	}
	_, stop := svc.start(context.Background())
	defer func() {
		if err := stop(); err != nil {
			b.Error(err)
		}
	}()
	ctx := testContext(b)
	if _, err := svc.inventory.Send(ctx, "chair", Restock{Quantity: 2 * (b.N + 1)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		order := fmt.Sprint("bench-", i)
		if _, err := svc.orders.Send(ctx, order, placeAda); err != nil {
			b.Fatal(err)
		}
		inst, err := svc.awaitEnd(ctx, order, 10*time.Second)
		if err != nil || inst.Status != saga.Completed {
			b.Fatalf("checkout %s: %v (%+v)", order, err, inst)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
}

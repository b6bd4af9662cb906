package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// startService opens a service over be and b on clock and runs it until
// the test ends.
func startService(t *testing.T, be app.Backend, b eventBus, clock *testkit.ManualClock) *service {
	t.Helper()
	svc, err := openService(be, b, settings{clock: clock, reservationTimeout: timeout, payments: defaultPayments, logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := svc.start(context.Background())
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop the service: %v", err)
		}
	})
	return svc
}

// checkout returns the saga instance of order.
func checkout(ctx context.Context, t *testing.T, svc *service, order string) saga.Instance[Checkout] {
	t.Helper()
	inst, err := svc.checkouts.Instance(ctx, order)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// waitFor waits until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !testkit.Eventually(t, 20*time.Second, cond) {
		t.Fatalf("waiting for %s", what)
	}
}

// waiting reports whether order's reservation of sku waits for stock.
func waiting(ctx context.Context, svc *service, sku, order string) bool {
	res, err := svc.inventory.State(ctx, sku)
	return err == nil && waitingIndex(res.State.Waiting, order) >= 0
}

// streamTypes returns the event types of stream, in order.
func streamTypes(t *testing.T, store persistence.EventStore, stream string) []string {
	t.Helper()
	events, err := store.Load(testContext(t), stream, 1)
	if errors.Is(err, persistence.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	return types
}

// e2ePath is one way a checkout goes through the whole service, and
// where it leaves the order, the payment and the chairs' stock.
type e2ePath struct {
	name    string
	stock   int    // chairs on hand before the order
	card    string // the order's card token
	restock bool   // bring 5 chairs once the reservation waits
	timeOut bool   // advance the clock past the reservation timeout
	status  saga.Status
	reason  string
	streams map[string][]string // event types by stream
}

var e2ePaths = []e2ePath{
	{
		name: "happy path", card: cardOK, restock: true, status: saga.Completed,
		streams: map[string][]string{
			"order/1001":      {"order.placed", "order.confirmed"},
			"payment/1001":    {"payment.charged"},
			"inventory/chair": {"inventory.reservation-pending", "inventory.stock-arrived", "inventory.reservation-confirmed"},
		},
	},
	{
		name: "payment declined", stock: 3, card: cardDeclined, status: saga.Failed, reason: "payment refused: card declined",
		streams: map[string][]string{
			"order/1001":      {"order.placed", "order.cancelled"},
			"payment/1001":    nil,
			"inventory/chair": {"inventory.stock-arrived", "inventory.reserved", "inventory.released"},
		},
	},
	{
		name: "reservation times out", card: cardOK, timeOut: true, status: saga.Failed, reason: timedOut,
		streams: map[string][]string{
			"order/1001":      {"order.placed", "order.cancelled"},
			"payment/1001":    {"payment.charged", "payment.refunded"},
			"inventory/chair": {"inventory.reservation-pending", "inventory.released"},
		},
	},
}

// TestCheckoutPathsInMemory runs each path the production way — order
// aggregate, memory store, relay, memory bus, saga.Run — on a manual
// clock.
func TestCheckoutPathsInMemory(t *testing.T) {
	for _, p := range e2ePaths {
		t.Run(p.name, func(t *testing.T) {
			be, clock := app.Memory(), testkit.NewManualClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
			svc := startService(t, be, busmemory.New(), clock)
			ctx := testContext(t)
			if p.stock > 0 {
				if _, err := svc.inventory.Send(ctx, "chair", Restock{Quantity: p.stock}); err != nil {
					t.Fatal(err)
				}
			}
			place := placeAda
			place.Card = p.card
			if _, err := svc.orders.Send(ctx, "1001", place); err != nil {
				t.Fatal(err)
			}
			if p.restock {
				waitFor(t, "the reservation to wait", func() bool { return waiting(ctx, svc, "chair", "1001") })
				if _, err := svc.inventory.Send(ctx, "chair", Restock{Quantity: 5}); err != nil {
					t.Fatal(err)
				}
			}
			if p.timeOut {
				waitFor(t, "both steps to be answered", func() bool {
					inst := checkout(ctx, t, svc, "1001")
					return inst.State.Paid && len(inst.Pending) == 0 && waiting(ctx, svc, "chair", "1001")
				})
				clock.Advance(timeout)
			}
			inst, err := svc.awaitEnd(ctx, "1001", 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if inst.Status != p.status || !strings.Contains(inst.Reason, p.reason) {
				t.Errorf("saga %s (%q), want %s (%q)", inst.Status, inst.Reason, p.status, p.reason)
			}
			for stream, want := range p.streams {
				if diff := cmp.Diff(want, streamTypes(t, be.Store, stream)); diff != "" {
					t.Errorf("stream %s (-want +got):\n%s", stream, diff)
				}
			}
			// The timer either fires or is disarmed, never both: the
			// timeline shows no cancel of a timer that fired.
			sagaEvents := streamTypes(t, be.Store, "saga-checkout/1001")
			fired, disarmed := slices.Contains(sagaEvents, "saga.timer-fired"), slices.Contains(sagaEvents, "saga.timer-cancelled")
			if fired != p.timeOut || disarmed == p.timeOut {
				t.Errorf("timer fired %v and disarmed %v, want fired %v (saga events %q)", fired, disarmed, p.timeOut, sagaEvents)
			}
			clock.Advance(time.Hour) // an ended saga's timers stay quiet
			if inst := checkout(ctx, t, svc, "1001"); inst.Status != p.status || inst.Timers != nil || inst.Pending != nil || inst.Compensations != nil {
				t.Errorf("after the end: %+v", inst)
			}
		})
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) {
	// go-metrics, which sarama (the Kafka bus) uses, starts a process-wide
	// ticker with the first meter and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must returns v, or panics on err: for the definitions, which fail only
// if the code is wrong.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var (
	placeAda = PlaceOrder{Customer: "ada", SKU: "chair", Quantity: 2, Amount: 80_00, Card: cardOK}
	// The scenarios' aggregate id is "scenario".
	adaPlaced = OrderPlaced{Order: "scenario", Customer: "ada", SKU: "chair", Quantity: 2, Amount: 80_00, Card: cardOK}
)

// TestOrderRules checks the order's rules on the pure functions and
// through a live aggregate actor.
func TestOrderRules(t *testing.T) {
	def := must(newOrderDefinition())
	type scenario = testkit.Scenario[Order, OrderCommand, OrderEvent, struct{}]
	tests := []struct {
		name  string
		given []OrderEvent
		steps func(sc *scenario)
	}{
		{"placing records the order under its id", nil, func(sc *scenario) {
			sc.When(placeAda).Then(adaPlaced).ThenState(func(o *Order) {
				o.Status, o.Customer, o.SKU, o.Quantity, o.Amount, o.Card = StatusPlaced, "ada", "chair", 2, 80_00, cardOK
			})
		}},
		{"placing reports every missing part at once", nil, func(sc *scenario) {
			st := sc.When(PlaceOrder{Customer: " ", Quantity: 0})
			for _, err := range []error{ErrNoCustomer, ErrNoSKU, ErrBadQuantity, ErrBadAmount, ErrNoCard} {
				st.ThenError(err)
			}
			st.ThenUnchanged()
		}},
		{"placing twice is rejected", []OrderEvent{adaPlaced}, func(sc *scenario) {
			sc.When(placeAda).ThenError(ErrAlreadyPlaced).ThenUnchanged()
		}},
		{"a placed order is confirmed", []OrderEvent{adaPlaced}, func(sc *scenario) {
			sc.When(ConfirmOrder{}).Then(OrderConfirmed{}).ThenState(func(o *Order) { o.Status = StatusConfirmed })
		}},
		{"a placed order is cancelled with a reason", []OrderEvent{adaPlaced}, func(sc *scenario) {
			sc.When(CancelOrder{Reason: "payment failed"}).Then(OrderCancelled{Reason: "payment failed"}).
				ThenState(func(o *Order) { o.Status, o.Reason = StatusCancelled, "payment failed" })
		}},
		{"an order not placed cannot move", nil, func(sc *scenario) {
			sc.When(ConfirmOrder{}).ThenError(ErrNotPlaced)
			sc.When(CancelOrder{}).ThenError(ErrNotPlaced)
		}},
		{"a confirmed order cannot be cancelled", []OrderEvent{adaPlaced, OrderConfirmed{}}, func(sc *scenario) {
			sc.When(CancelOrder{}).ThenError(ErrOrderConfirmed).ThenUnchanged()
			sc.When(ConfirmOrder{}).ThenError(ErrOrderConfirmed)
		}},
		{"a cancelled order cannot be confirmed", []OrderEvent{adaPlaced, OrderCancelled{}}, func(sc *scenario) {
			sc.When(ConfirmOrder{}).ThenError(ErrOrderCancelled).ThenUnchanged()
			sc.When(CancelOrder{}).ThenError(ErrOrderCancelled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testkit.Both(t, def, tt.given, tt.steps) })
	}
}

// TestPaymentRules checks the payment's rules: declines, one charge, one
// refund.
func TestPaymentRules(t *testing.T) {
	def := must(newPaymentDefinition(defaultPayments))
	type scenario = testkit.Scenario[Payment, PaymentCommand, PaymentEvent, PaymentEnv]
	charged := Charged{Amount: 80_00, Card: cardOK}
	tests := []struct {
		name  string
		given []PaymentEvent
		steps func(sc *scenario)
	}{
		{"a charge within the limit succeeds", nil, func(sc *scenario) {
			sc.When(Charge{Amount: 80_00, Card: cardOK}).Then(charged).
				ThenState(func(p *Payment) { p.Status, p.Amount, p.Card = PaymentCharged, 80_00, cardOK })
			sc.When(Charge{Amount: 80_00, Card: cardOK}).ThenError(ErrAlreadyCharged)
		}},
		{"the limit itself is allowed", nil, func(sc *scenario) {
			sc.When(Charge{Amount: defaultPayments.Limit, Card: cardOK}).Then(Charged{Amount: defaultPayments.Limit, Card: cardOK})
		}},
		{"an amount over the limit is declined", nil, func(sc *scenario) {
			sc.When(Charge{Amount: defaultPayments.Limit + 1, Card: cardOK}).ThenError(ErrDeclined).ThenUnchanged()
		}},
		{"a card marked to decline is declined", nil, func(sc *scenario) {
			sc.When(Charge{Amount: 1_00, Card: cardDeclined}).ThenError(ErrDeclined).ThenUnchanged()
		}},
		{"nothing is charged for nothing", nil, func(sc *scenario) {
			sc.When(Charge{Card: cardOK}).ThenError(ErrBadAmount)
		}},
		{"a charge is refunded once", []PaymentEvent{charged}, func(sc *scenario) {
			sc.When(Refund{}).Then(Refunded{Amount: 80_00}).ThenState(func(p *Payment) { p.Status = PaymentRefunded })
			sc.When(Refund{}).ThenError(ErrAlreadyRefunded).ThenUnchanged()
			sc.When(Charge{Amount: 80_00, Card: cardOK}).ThenError(ErrAlreadyCharged)
		}},
		{"nothing charged, nothing to refund", nil, func(sc *scenario) {
			sc.When(Refund{}).ThenError(ErrNotCharged)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testkit.Both(t, def, tt.given, tt.steps) })
	}
}

// TestInventoryRules checks reservations: held at once, waiting in line,
// confirmed when stock arrives, released.
func TestInventoryRules(t *testing.T) {
	def := must(newInventoryDefinition())
	type scenario = testkit.Scenario[Inventory, InventoryCommand, InventoryEvent, struct{}]
	held := func(order string, n int) func(*Inventory) {
		return func(inv *Inventory) { inv.Held = map[string]int{order: n} }
	}
	tests := []struct {
		name  string
		given []InventoryEvent
		steps func(sc *scenario)
	}{
		{"stock on hand is reserved at once", []InventoryEvent{StockArrived{Quantity: 3}}, func(sc *scenario) {
			sc.When(Reserve{Order: "a", Quantity: 2}).Then(Reserved{Order: "a", Quantity: 2}).
				ThenState(func(inv *Inventory) { inv.OnHand = 1; held("a", 2)(inv) })
			sc.When(Reserve{Order: "a", Quantity: 1}).ThenError(ErrAlreadyReserved)
		}},
		{"short stock makes the reservation wait", []InventoryEvent{StockArrived{Quantity: 1}}, func(sc *scenario) {
			sc.When(Reserve{Order: "a", Quantity: 3}).Then(ReservationPending{Order: "a", Quantity: 3, Short: 2}).
				ThenState(func(inv *Inventory) { inv.Waiting = []Waiting{{Order: "a", Quantity: 3}} })
			sc.When(Reserve{Order: "a", Quantity: 3}).ThenError(ErrAlreadyReserved)
			// b waits behind a, although one unit is on hand.
			sc.When(Reserve{Order: "b", Quantity: 1}).Then(ReservationPending{Order: "b", Quantity: 1, Short: 3})
		}},
		{"stock arriving confirms waiting reservations, oldest first", []InventoryEvent{
			ReservationPending{Order: "a", Quantity: 2, Short: 2}, ReservationPending{Order: "b", Quantity: 5, Short: 7}, ReservationPending{Order: "c", Quantity: 1, Short: 8},
		}, func(sc *scenario) {
			sc.When(Restock{Quantity: 4}).Then(StockArrived{Quantity: 4}, ReservationConfirmed{Order: "a", Quantity: 2}).
				ThenState(func(inv *Inventory) {
					inv.OnHand, inv.Held, inv.Waiting = 2, map[string]int{"a": 2}, []Waiting{{"b", 5}, {"c", 1}}
				})
			// Dropping b lets c through.
			sc.When(Release{Order: "b"}).Then(Released{Order: "b", Quantity: 5, Pending: true}, ReservationConfirmed{Order: "c", Quantity: 1})
		}},
		{"releasing held stock serves those waiting", []InventoryEvent{
			StockArrived{Quantity: 2}, Reserved{Order: "a", Quantity: 2}, ReservationPending{Order: "b", Quantity: 1, Short: 1},
		}, func(sc *scenario) {
			sc.When(Release{Order: "a"}).Then(Released{Order: "a", Quantity: 2}, ReservationConfirmed{Order: "b", Quantity: 1}).
				ThenState(func(inv *Inventory) { inv.OnHand, inv.Held, inv.Waiting = 1, map[string]int{"b": 1}, nil })
			sc.When(Release{Order: "a"}).ThenError(ErrNoReservation)
		}},
		{"quantities must be positive", nil, func(sc *scenario) {
			sc.When(Reserve{Order: "a"}).ThenError(ErrBadQuantity)
			sc.When(Restock{Quantity: -1}).ThenError(ErrBadQuantity)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testkit.Both(t, def, tt.given, func(sc *scenario) { tt.steps(sc.WithCompare(cmpopts.EquateEmpty())) })
		})
	}
}

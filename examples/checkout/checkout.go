package main

// The checkout saga turns a placed order into a confirmed one, or cancels
// it and undoes what was done. No aggregate can do this alone: the order,
// the SKU's stock and the payment are three consistency boundaries.
//
//	OrderPlaced ─▶ reserve stock (undo: Release) ┐
//	               charge the card (undo: Refund) ├─ both done ─▶ confirm the order ─▶ completed
//	               arm the "reservation" timer    ┘
//
//	payment declined, or the timer fires before the stock is held
//	    ─▶ cancel the order ─▶ compensate: the framework dispatches the undo of
//	       every step that succeeded, newest first ─▶ failed (with the reason)
//
// The saga hears of OrderPlaced, Reserved and ReservationConfirmed on the
// bus; the outcomes of its own commands come back from the aggregate
// runtime. Each instance is named after its order.

import (
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// The saga's type, steps and timer. The framework sends a step's command
// under the id saga.CommandID(checkoutType, order, step), and dispatches
// the undo of a step as step saga.CompensationStep(step).
const (
	checkoutType     = "checkout"
	stepReserve      = "reserve"
	stepCharge       = "charge"
	stepConfirm      = "confirm"
	stepCancel       = "cancel-order"
	reservationTimer = "reservation"
	// topicPrefix names the bus topics: the relay publishes the events of
	// stream "order/1001" to "events.order".
	topicPrefix = "events."
)

// CheckoutEnv is the saga's configuration.
type CheckoutEnv struct {
	// ReservationTimeout is how long the saga waits for the stock to be
	// held before it cancels the order.
	ReservationTimeout time.Duration
}

// Checkout is the state of one checkout, rebuilt from the saga's own
// events: what it needs to take the next step.
type Checkout struct {
	Order     string
	SKU       string
	Quantity  int
	Amount    Money
	Card      string
	StockHeld bool   // the inventory holds the units
	Paid      bool   // the charge succeeded
	Closing   string // why the order is being cancelled; empty while the checkout goes on
}

// CheckoutEvent is one of the saga's own events, stored in the instance's
// stream.
type CheckoutEvent interface{ isCheckoutEvent() }

type (
	// CheckoutStarted records the order being checked out.
	CheckoutStarted struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
		Amount   Money  `json:"amount"`
		Card     string `json:"card"`
	}
	// StockHeld records that the inventory holds the units.
	StockHeld struct{}
	// PaymentTaken records that the charge succeeded.
	PaymentTaken struct{}
	// CheckoutCancelling records the decision to cancel the order: the
	// reason the customer is given, and the failure that caused it, if
	// any, for the record.
	CheckoutCancelling struct {
		Reason string `json:"reason"`
		Cause  string `json:"cause,omitempty"`
	}
)

func (CheckoutStarted) isCheckoutEvent()    {}
func (StockHeld) isCheckoutEvent()          {}
func (PaymentTaken) isCheckoutEvent()       {}
func (CheckoutCancelling) isCheckoutEvent() {}

// newCheckoutSaga declares the checkout saga with its reservation timeout.
func newCheckoutSaga(timeout time.Duration) (saga.Definition[Checkout, CheckoutEvent, CheckoutEnv], error) {
	events, commands := persistence.NewRegistry(), persistence.NewRegistry()
	err := errors.Join(
		// The domain events the saga reads, under their stored names.
		persistence.Register[OrderPlaced](events, orderPlacedType),
		persistence.Register[Reserved](events, reservedType),
		persistence.Register[ReservationConfirmed](events, reservationConfirmedType),
		// Its own events.
		persistence.Register[CheckoutStarted](events, "checkout.started"),
		persistence.Register[StockHeld](events, "checkout.stock-held"),
		persistence.Register[PaymentTaken](events, "checkout.paid"),
		persistence.Register[CheckoutCancelling](events, "checkout.cancelling"),
		// The commands it dispatches, stored while they are pending.
		persistence.Register[Reserve](commands, "inventory.reserve"),
		persistence.Register[Release](commands, "inventory.release"),
		persistence.Register[Charge](commands, "payment.charge"),
		persistence.Register[Refund](commands, "payment.refund"),
		persistence.Register[ConfirmOrder](commands, "order.confirm"),
		persistence.Register[CancelOrder](commands, "order.cancel"),
	)
	def := saga.Definition[Checkout, CheckoutEvent, CheckoutEnv]{
		Type:     checkoutType,
		Topics:   []string{topicPrefix + orderType, topicPrefix + inventoryType},
		Events:   events,
		Commands: commands,
		Route:    routeCheckout,
		Initial:  func(id string) Checkout { return Checkout{Order: id} },
		Handle:   handleCheckout,
		Apply:    applyCheckout,
		Env:      CheckoutEnv{ReservationTimeout: timeout},
	}
	return def, errors.Join(err, def.Validate())
}

// routeCheckout names the instance an event concerns: its order.
func routeCheckout(event any, _ map[string]string) saga.Route {
	switch e := event.(type) {
	case OrderPlaced:
		return saga.Route{Mode: saga.Start, ID: e.Order}
	case Reserved:
		return saga.Route{Mode: saga.Continue, ID: e.Order}
	case ReservationConfirmed:
		return saga.Route{Mode: saga.Continue, ID: e.Order}
	}
	return saga.Route{Mode: saga.Ignore}
}

// handleCheckout decides the next step. It is pure: the timeout comes from
// env, everything else from the state and the input.
func handleCheckout(c Checkout, in saga.Input, env CheckoutEnv) (saga.Decision[CheckoutEvent], error) {
	switch {
	case in.Event != nil:
		switch e := in.Event.(type) {
		case OrderPlaced:
			return start(e, env), nil
		case Reserved, ReservationConfirmed:
			return c.stockHeld(), nil
		}
		return saga.Decision[CheckoutEvent]{}, fmt.Errorf("unexpected event %T", in.Event)
	case in.Timer == reservationTimer:
		// cancel also lists the timer to disarm; the framework records no
		// cancellation of the timer that has just fired.
		return c.cancel(fmt.Sprintf("stock not held within %v", env.ReservationTimeout), ""), nil
	case in.Result != nil:
		return c.result(*in.Result), nil
	}
	return saga.Decision[CheckoutEvent]{}, fmt.Errorf("unexpected input %+v", in)
}

// start reserves the stock and charges the card at once, each with its
// undo, and gives the stock until the timer fires to be held.
func start(e OrderPlaced, env CheckoutEnv) saga.Decision[CheckoutEvent] {
	return saga.Decision[CheckoutEvent]{
		Events: []CheckoutEvent{CheckoutStarted{SKU: e.SKU, Quantity: e.Quantity, Amount: e.Amount, Card: e.Card}},
		Dispatch: []saga.Command{
			{
				Step: stepReserve, Aggregate: inventoryType, ID: e.SKU, Command: Reserve{Order: e.Order, Quantity: e.Quantity},
				Compensation: &saga.Command{Aggregate: inventoryType, ID: e.SKU, Command: Release{Order: e.Order}},
			},
			{
				Step: stepCharge, Aggregate: paymentType, ID: e.Order, Command: Charge{Amount: e.Amount, Card: e.Card},
				Compensation: &saga.Command{Aggregate: paymentType, ID: e.Order, Command: Refund{}},
			},
		},
		Schedule: []saga.Timer{{Name: reservationTimer, After: env.ReservationTimeout}},
	}
}

// stockHeld records the held stock — from Reserved at once, or from
// ReservationConfirmed later — and disarms the timer.
func (c Checkout) stockHeld() saga.Decision[CheckoutEvent] {
	if c.StockHeld || c.Closing != "" {
		return saga.Decision[CheckoutEvent]{} // a second notice, or too late
	}
	d := saga.Decision[CheckoutEvent]{Events: []CheckoutEvent{StockHeld{}}, Cancel: []string{reservationTimer}}
	if c.Paid {
		d.Dispatch = []saga.Command{c.confirm()}
	}
	return d
}

// result reacts to the outcome of a dispatched command.
func (c Checkout) result(r saga.Result) saga.Decision[CheckoutEvent] {
	switch r.Step {
	case stepReserve:
		if r.Err != nil {
			return c.cancel("stock not reserved", r.Err.Error())
		}
		// Accepted: held or waiting. The inventory's events say which.
	case stepCharge:
		switch {
		case errors.Is(r.Err, aggregate.ErrRejected):
			// A business refusal — a declined card, say. Its text is the
			// payment aggregate's own message, fit for the customer.
			return c.cancel("payment refused: "+r.Err.Error(), "")
		case r.Err != nil:
			// An infrastructure failure that outlasted the retries: the
			// customer is told no more than that; the record keeps why.
			return c.cancel("payment failed", r.Err.Error())
		case c.Closing != "":
			// Charged while cancelling: the compensation refunds it.
		default:
			d := saga.Decision[CheckoutEvent]{Events: []CheckoutEvent{PaymentTaken{}}}
			if c.StockHeld {
				d.Dispatch = []saga.Command{c.confirm()}
			}
			return d
		}
	case stepConfirm:
		if r.Err != nil {
			return saga.Decision[CheckoutEvent]{Compensate: "confirming the order failed: " + r.Err.Error()}
		}
		return saga.Decision[CheckoutEvent]{Complete: true}
	case stepCancel:
		reason := c.Closing
		if r.Err != nil {
			reason += "; cancelling the order failed: " + r.Err.Error()
		}
		return saga.Decision[CheckoutEvent]{Compensate: reason}
	}
	return saga.Decision[CheckoutEvent]{}
}

// cancel cancels the order first — so that nothing confirms it — and
// compensates the other steps once that is done (see result). The reason
// goes to the customer; the cause, an internal error text, only to the
// saga's record.
func (c Checkout) cancel(reason, cause string) saga.Decision[CheckoutEvent] {
	if c.Closing != "" {
		return saga.Decision[CheckoutEvent]{}
	}
	return saga.Decision[CheckoutEvent]{
		Events:   []CheckoutEvent{CheckoutCancelling{Reason: reason, Cause: cause}},
		Cancel:   []string{reservationTimer},
		Dispatch: []saga.Command{{Step: stepCancel, Aggregate: orderType, ID: c.Order, Command: CancelOrder{Reason: reason}}},
	}
}

func (c Checkout) confirm() saga.Command {
	return saga.Command{Step: stepConfirm, Aggregate: orderType, ID: c.Order, Command: ConfirmOrder{}}
}

// applyCheckout evolves the saga's state by one of its events.
func applyCheckout(c *Checkout, e CheckoutEvent) {
	switch e := e.(type) {
	case CheckoutStarted:
		c.SKU, c.Quantity, c.Amount, c.Card = e.SKU, e.Quantity, e.Amount, e.Card
	case StockHeld:
		c.StockHeld = true
	case PaymentTaken:
		c.Paid = true
	case CheckoutCancelling:
		c.Closing = e.Reason
	}
}

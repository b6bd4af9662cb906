package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// The harness drives the saga's pure logic step by step on a manual clock
// (testkit.GivenSaga) and fails on any outcome left unasserted.

const timeout = 15 * time.Minute

var (
	placed1001 = OrderPlaced{Order: "1001", Customer: "ada", SKU: "chair", Quantity: 2, Amount: 80_00, Card: cardOK}
	started    = CheckoutStarted{SKU: "chair", Quantity: 2, Amount: 80_00, Card: cardOK}

	reserve  = saga.Dispatched{Step: stepReserve, Aggregate: inventoryType, ID: "chair", Command: Reserve{Order: "1001", Quantity: 2}}
	charge   = saga.Dispatched{Step: stepCharge, Aggregate: paymentType, ID: "1001", Command: Charge{Amount: 80_00, Card: cardOK}}
	confirm  = saga.Dispatched{Step: stepConfirm, Aggregate: orderType, ID: "1001", Command: ConfirmOrder{}}
	release  = saga.Dispatched{Step: saga.CompensationStep(stepReserve), Aggregate: inventoryType, ID: "chair", Command: Release{Order: "1001"}}
	refund   = saga.Dispatched{Step: saga.CompensationStep(stepCharge), Aggregate: paymentType, ID: "1001", Command: Refund{}}
	timedOut = "stock not held within 15m0s"
)

func cancelOrder(reason string) saga.Dispatched {
	return saga.Dispatched{Step: stepCancel, Aggregate: orderType, ID: "1001", Command: CancelOrder{Reason: reason}}
}

func checkoutSaga(t *testing.T) saga.Definition[Checkout, CheckoutEvent, CheckoutEnv] {
	t.Helper()
	return must(newCheckoutSaga(timeout))
}

// The payment's rejection of the declined card, as the runtime returns it.
// The saga sees a rejection: the handler's message, matching
// aggregate.ErrRejected.
var (
	errDeclined = &aggregate.RejectedError{Type: paymentType, ID: "1001", Err: fmt.Errorf("%w: the provider refuses card %s", ErrDeclined, cardDeclined)}
	declined    = "payment refused: card declined: the provider refuses card " + cardDeclined
)

func TestSagaHappyPath(t *testing.T) {
	t.Run("stock on hand", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001")
		st.When(placed1001).ThenEvents(started).ThenDispatches(reserve, charge).ThenSchedules(reservationTimer).ThenStatus(saga.Running, "")
		st.Reply(stepReserve, nil).ThenStatus(saga.Running, "") // accepted; the inventory's event says how
		st.When(Reserved{Order: "1001", Quantity: 2}).ThenEvents(StockHeld{}).ThenCancels(reservationTimer)
		st.Reply(stepCharge, nil).ThenEvents(PaymentTaken{}).ThenDispatches(confirm)
		st.Reply(stepConfirm, nil).ThenStatus(saga.Completed, "")
		st.Advance(time.Hour).ThenIgnored() // the disarmed timer never fires
	})
	t.Run("the reservation waits until stock arrives", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		st.Reply(stepCharge, nil).ThenEvents(PaymentTaken{})
		st.Reply(stepReserve, nil).ThenStatus(saga.Running, "")
		st.When(ReservationPending{Order: "1001", Quantity: 2, Short: 2}).ThenIgnored() // not routed: the saga waits
		st.Advance(timeout - time.Second).ThenIgnored()
		st.When(ReservationConfirmed{Order: "1001", Quantity: 2}).ThenEvents(StockHeld{}).ThenCancels(reservationTimer).ThenDispatches(confirm)
		st.When(ReservationConfirmed{Order: "1001", Quantity: 2}).ThenIgnored() // a second notice
		st.Reply(stepConfirm, nil).ThenStatus(saga.Completed, "")
		st.Advance(time.Hour).ThenIgnored()
	})
}

func TestSagaPaymentDeclined(t *testing.T) {
	t.Run("after the stock is held", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		st.Reply(stepReserve, nil).ThenStatus(saga.Running, "")
		st.When(Reserved{Order: "1001", Quantity: 2}).ThenEvents(StockHeld{}).ThenCancels(reservationTimer)
		st.Reply(stepCharge, errDeclined).
			ThenEvents(CheckoutCancelling{Reason: declined}).
			ThenDispatches(cancelOrder(declined)).ThenStatus(saga.Running, "")
		// The order is cancelled first; then the framework undoes the
		// steps that succeeded — only the reservation.
		st.Reply(stepCancel, nil).ThenDispatches(release).ThenStatus(saga.Compensating, declined)
		st.Reply(release.Step, nil).ThenStatus(saga.Failed, declined)
		st.Reply(release.Step, nil).ThenIgnored() // a duplicate outcome
	})
	t.Run("before the reservation is answered", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		st.Reply(stepCharge, errDeclined).
			ThenEvents(CheckoutCancelling{Reason: declined}).
			ThenCancels(reservationTimer).ThenDispatches(cancelOrder(declined))
		st.Reply(stepCancel, nil).ThenStatus(saga.Compensating, declined) // waits for the reservation
		st.Reply(stepReserve, nil).ThenDispatches(release)                // late, and undone
		st.When(Reserved{Order: "1001", Quantity: 2}).ThenIgnored()
		st.Reply(release.Step, nil).ThenStatus(saga.Failed, declined)
	})
	t.Run("the payment cannot be taken", func(t *testing.T) {
		// Not a refusal: the customer hears only that the payment failed.
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		cause := fmt.Errorf("aggregate payment/1001: %w: store down", aggregate.ErrUnavailable)
		st.Reply(stepCharge, cause).
			ThenEvents(CheckoutCancelling{Reason: "payment failed", Cause: cause.Error()}).
			ThenCancels(reservationTimer).ThenDispatches(cancelOrder("payment failed"))
		st.Reply(stepReserve, nil).ThenStatus(saga.Running, "") // the order is cancelled first
		st.Reply(stepCancel, nil).ThenDispatches(release).ThenStatus(saga.Compensating, "payment failed")
		st.Reply(release.Step, nil).ThenStatus(saga.Failed, "payment failed")
	})
}

func TestSagaReservationTimeout(t *testing.T) {
	st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
	st.Reply(stepReserve, nil).ThenStatus(saga.Running, "")
	st.Reply(stepCharge, nil).ThenEvents(PaymentTaken{})
	st.Advance(timeout - time.Second).ThenIgnored()
	st.Advance(time.Second).ThenEvents(CheckoutCancelling{Reason: timedOut}).ThenDispatches(cancelOrder(timedOut))
	st.When(ReservationConfirmed{Order: "1001", Quantity: 2}).ThenIgnored() // too late
	// Newest first: the charge succeeded last, so it is refunded first.
	st.Reply(stepCancel, nil).ThenDispatches(refund).ThenStatus(saga.Compensating, timedOut)
	st.Reply(refund.Step, nil).ThenDispatches(release)
	st.Reply(release.Step, nil).ThenStatus(saga.Failed, timedOut)
	st.Advance(time.Hour).ThenIgnored()
}

func TestSagaOtherFailures(t *testing.T) {
	t.Run("the reservation is refused", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		refusal := &aggregate.RejectedError{Type: inventoryType, ID: "chair", Err: ErrBadQuantity}
		st.Reply(stepReserve, refusal).ThenEvents(CheckoutCancelling{Reason: "stock not reserved", Cause: ErrBadQuantity.Error()}).
			ThenCancels(reservationTimer).ThenDispatches(cancelOrder("stock not reserved"))
		st.Reply(stepCharge, nil).ThenStatus(saga.Running, "") // charged while cancelling: refunded below
		st.Reply(stepCancel, nil).ThenDispatches(refund)
		st.Reply(refund.Step, nil).ThenStatus(saga.Failed, "stock not reserved")
	})
	t.Run("the order cannot be confirmed", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		st.Reply(stepReserve, nil)
		st.When(Reserved{Order: "1001", Quantity: 2}).ThenEvents(StockHeld{}).ThenCancels(reservationTimer)
		st.Reply(stepCharge, nil).ThenEvents(PaymentTaken{}).ThenDispatches(confirm)
		st.Reply(stepConfirm, &aggregate.RejectedError{Type: orderType, ID: "1001", Err: ErrOrderCancelled}).
			ThenDispatches(refund).ThenStatus(saga.Compensating, "confirming the order failed: order is cancelled")
		st.Reply(refund.Step, nil).ThenDispatches(release)
		st.Reply(release.Step, errors.New("inventory down")).ThenStatus(saga.Failed, release.Step+" failed: inventory down")
	})
	t.Run("events for other orders and second starts are ignored", func(t *testing.T) {
		st := testkit.GivenSaga(t, checkoutSaga(t), "1001", placed1001)
		st.When(Reserved{Order: "1002", Quantity: 2}).ThenIgnored()
		st.When(placed1001).ThenIgnored()
		st.When(OrderConfirmed{}).ThenIgnored() // not an event the saga reads
	})
}

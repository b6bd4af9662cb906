package main

// The payment aggregate: one per order, named after it. Charge takes the
// order's amount from a card, unless the payment provider declines it —
// here, an amount over a limit or a card token marked to decline; Refund
// gives it back (the checkout saga's compensation of a charge):
//
//	(none) --Charge--> charged --Refund--> refunded

import (
	"errors"
	"fmt"
	"slices"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// paymentType names the aggregate type: a payment's stream is
// "payment/<order id>".
const paymentType = "payment"

// Money is an amount in cents.
type Money int64

// String prints m as units and cents, e.g. 80.00.
func (m Money) String() string { return fmt.Sprintf("%d.%02d", m/100, m%100) }

// PaymentStatus is where a payment is in its life.
type PaymentStatus string

// The payment statuses.
const (
	PaymentNone     PaymentStatus = ""
	PaymentCharged  PaymentStatus = "charged"
	PaymentRefunded PaymentStatus = "refunded"
)

// Payment is the state of one order's payment.
type Payment struct {
	Status PaymentStatus
	Amount Money
	Card   string
}

// PaymentEnv holds the provider's rules, which the charge handler reads
// instead of calling out: handlers stay pure, so tests need no provider.
type PaymentEnv struct {
	// Limit is the largest amount a card may be charged.
	Limit Money
	// DeclinedCards are card tokens the provider declines.
	DeclinedCards []string
}

// PaymentCommand is what the checkout saga asks of a payment.
type PaymentCommand interface{ isPaymentCommand() }

type (
	// Charge takes Amount from Card, a card token from the payment
	// provider (never the card number).
	Charge struct {
		Amount Money
		Card   string
	}
	// Refund gives a charge back.
	Refund struct{}
)

func (Charge) isPaymentCommand() {}
func (Refund) isPaymentCommand() {}

// PaymentEvent is what happened to a payment.
type PaymentEvent interface{ isPaymentEvent() }

type (
	// Charged records a charge.
	Charged struct {
		Amount Money  `json:"amount"`
		Card   string `json:"card"`
	}
	// Refunded records a refund of the whole charge.
	Refunded struct {
		Amount Money `json:"amount"`
	}
)

func (Charged) isPaymentEvent()  {}
func (Refunded) isPaymentEvent() {}

// Business rules a payment command can break. A decline matches
// ErrDeclined.
var (
	ErrDeclined        = errors.New("card declined")
	ErrAlreadyCharged  = errors.New("payment already charged")
	ErrNotCharged      = errors.New("nothing was charged")
	ErrAlreadyRefunded = errors.New("payment already refunded")
)

// newPaymentDefinition declares the payment aggregate under the provider
// rules env.
func newPaymentDefinition(env PaymentEnv) (aggregate.Definition[Payment, PaymentCommand, PaymentEvent, PaymentEnv], error) {
	reg := persistence.NewRegistry()
	if err := errors.Join(
		persistence.Register[Charged](reg, "payment.charged"),
		persistence.Register[Refunded](reg, "payment.refunded"),
	); err != nil {
		return aggregate.Definition[Payment, PaymentCommand, PaymentEvent, PaymentEnv]{}, err
	}
	return aggregate.Definition[Payment, PaymentCommand, PaymentEvent, PaymentEnv]{
		Type:   paymentType,
		Handle: handlePayment,
		Apply:  applyPayment,
		Events: reg,
		Env:    env,
	}, nil
}

// handlePayment decides a payment command.
func handlePayment(p Payment, c PaymentCommand, env PaymentEnv) (aggregate.Decision[PaymentCommand, PaymentEvent], error) {
	reject := aggregate.Reject[PaymentCommand, PaymentEvent]
	switch c := c.(type) {
	case Charge:
		switch {
		case p.Status != PaymentNone:
			return reject(ErrAlreadyCharged)
		case c.Amount <= 0:
			return reject(ErrBadAmount)
		case c.Amount > env.Limit:
			return reject(fmt.Errorf("%w: %s is over the limit of %s", ErrDeclined, c.Amount, env.Limit))
		case slices.Contains(env.DeclinedCards, c.Card):
			return reject(fmt.Errorf("%w: the provider refuses card %s", ErrDeclined, c.Card))
		}
		return aggregate.Emit[PaymentCommand, PaymentEvent](Charged(c)), nil
	case Refund:
		switch p.Status {
		case PaymentNone:
			return reject(ErrNotCharged)
		case PaymentRefunded:
			return reject(ErrAlreadyRefunded)
		}
		return aggregate.Emit[PaymentCommand, PaymentEvent](Refunded{Amount: p.Amount}), nil
	}
	return reject(fmt.Errorf("unknown payment command %T", c))
}

// applyPayment evolves a payment by one event.
func applyPayment(p *Payment, e PaymentEvent) {
	switch e := e.(type) {
	case Charged:
		p.Status, p.Amount, p.Card = PaymentCharged, e.Amount, e.Card
	case Refunded:
		p.Status = PaymentRefunded
	}
}

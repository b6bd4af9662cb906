package main

// The order service's events, as this read side decodes them. The type
// names and JSON fields are the contract examples/order-processing
// publishes ("order.placed", ...); the read side keeps its own copy of
// that contract instead of importing the write side's types, so either can
// change its internals freely.
//
// The events are "fat": OrderPlaced carries the customer and every line,
// so the projections below need nothing but the events themselves — no
// query back into the order service, which would make a rebuild depend on
// the write side's state today instead of the history.

import (
	"errors"

	"github.com/composable-go/composable/persistence"
)

// Line is one product of an order.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// OrderPlaced: a customer placed an order.
type OrderPlaced struct {
	Customer string `json:"customer"`
	Lines    []Line `json:"lines"`
}

// OrderCancelled: a placed order was cancelled.
type OrderCancelled struct {
	Reason string `json:"reason,omitempty"`
}

// OrderShipped: a placed order shipped.
type OrderShipped struct {
	Carrier string `json:"carrier"`
}

// newRegistry maps the contract's type names to the types above.
func newRegistry() (*persistence.Registry, error) {
	reg := persistence.NewRegistry()
	return reg, errors.Join(
		persistence.Register[OrderPlaced](reg, "order.placed"),
		persistence.Register[OrderCancelled](reg, "order.cancelled"),
		persistence.Register[OrderShipped](reg, "order.shipped"),
	)
}

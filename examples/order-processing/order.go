package main

// The order aggregate: the business rules of one order, as pure functions.
// (examples/todo explains the parts of an aggregate step by step; this file
// assumes them.) An order goes
//
//	(none) --PlaceOrder--> placed --ShipOrder--> shipped
//	                          \
//	                           --CancelOrder--> cancelled
//
// and every other transition is rejected.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// Status is where an order is in its life.
type Status string

// The statuses. An order that was never placed has StatusNone: aggregates
// exist, with their initial state, before their first event.
const (
	StatusNone      Status = ""
	StatusPlaced    Status = "placed"
	StatusCancelled Status = "cancelled"
	StatusShipped   Status = "shipped"
)

// Order is the state of one order. Snapshots store it as JSON, so every
// field that matters is exported.
type Order struct {
	Status   Status
	Customer string
	Lines    []Line
	// Carrier is set once the order shipped.
	Carrier string
	// CancelReason is set once the order was cancelled.
	CancelReason string
}

// Line is one product of an order, in commands, events and state alike.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Command is what a caller can ask of an order.
type Command interface{ isCommand() }

type (
	// PlaceOrder places a new order. It needs a customer and at least one
	// line, every line with a positive quantity; an order is placed once.
	PlaceOrder struct {
		Customer string
		Lines    []Line
	}
	// CancelOrder cancels a placed order that has not shipped. The reason
	// is optional.
	CancelOrder struct{ Reason string }
	// ShipOrder ships a placed order that was not cancelled, with a carrier
	// (required).
	ShipOrder struct{ Carrier string }
)

func (PlaceOrder) isCommand()  {}
func (CancelOrder) isCommand() {}
func (ShipOrder) isCommand()   {}

// Event is what happened to an order. The json tags and the names in
// newRegistry are the stored schema.
type Event interface{ isEvent() }

type (
	// OrderPlaced records a placed order.
	OrderPlaced struct {
		Customer string `json:"customer"`
		Lines    []Line `json:"lines"`
	}
	// OrderCancelled records a cancellation.
	OrderCancelled struct {
		Reason string `json:"reason,omitempty"`
	}
	// OrderShipped records a shipment.
	OrderShipped struct {
		Carrier string `json:"carrier"`
	}
)

func (OrderPlaced) isEvent()    {}
func (OrderCancelled) isEvent() {}
func (OrderShipped) isEvent()   {}

// The business rules; a rejected command's error matches one of these and
// aggregate.ErrRejected.
var (
	// ErrNoCustomer rejects PlaceOrder without a customer.
	ErrNoCustomer = errors.New("customer is required")
	// ErrNoLines rejects PlaceOrder without lines.
	ErrNoLines = errors.New("an order needs at least one line")
	// ErrBadQuantity rejects PlaceOrder with a line whose quantity is not
	// positive.
	ErrBadQuantity = errors.New("quantity must be positive")
	// ErrAlreadyPlaced rejects placing an order twice (even one cancelled
	// or shipped since).
	ErrAlreadyPlaced = errors.New("order was already placed")
	// ErrNotPlaced rejects cancelling or shipping an order never placed.
	ErrNotPlaced = errors.New("order was not placed")
	// ErrCancelled rejects shipping or cancelling a cancelled order.
	ErrCancelled = errors.New("order is cancelled")
	// ErrShipped rejects cancelling or shipping a shipped order.
	ErrShipped = errors.New("order has shipped")
	// ErrNoCarrier rejects ShipOrder without a carrier.
	ErrNoCarrier = errors.New("carrier is required")
)

// Env holds handle's dependencies; orders need none.
type Env struct{}

type decision = aggregate.Decision[Command, Event]

// handle decides a command. It checks the command's own content first,
// which needs no state, then the command against the order's status.
func handle(o Order, cmd Command, _ Env) (decision, error) {
	switch c := cmd.(type) {
	case PlaceOrder:
		if err := validatePlacement(c); err != nil {
			return decision{}, err
		}
		if o.Status != StatusNone {
			return decision{}, fmt.Errorf("%w (it is %s)", ErrAlreadyPlaced, o.Status)
		}
		// The event gets its own copy of the lines: the caller keeps the
		// command's slice and could change it after sending.
		return aggregate.Emit[Command, Event](OrderPlaced{Customer: strings.TrimSpace(c.Customer), Lines: slices.Clone(c.Lines)}), nil
	case CancelOrder:
		if err := requirePlaced(o); err != nil {
			return decision{}, err
		}
		return aggregate.Emit[Command, Event](OrderCancelled{Reason: strings.TrimSpace(c.Reason)}), nil
	case ShipOrder:
		carrier := strings.TrimSpace(c.Carrier)
		if carrier == "" {
			return decision{}, ErrNoCarrier
		}
		if err := requirePlaced(o); err != nil {
			return decision{}, err
		}
		return aggregate.Emit[Command, Event](OrderShipped{Carrier: carrier}), nil
	}
	return decision{}, fmt.Errorf("unknown command %T", cmd)
}

// validatePlacement checks a PlaceOrder on its own, without the state.
func validatePlacement(c PlaceOrder) error {
	if strings.TrimSpace(c.Customer) == "" {
		return ErrNoCustomer
	}
	if len(c.Lines) == 0 {
		return ErrNoLines
	}
	for i, l := range c.Lines {
		if l.Quantity <= 0 {
			return fmt.Errorf("line %d (%s): %w", i+1, l.SKU, ErrBadQuantity)
		}
	}
	return nil
}

// requirePlaced allows only an order that is placed and still open.
func requirePlaced(o Order) error {
	switch o.Status {
	case StatusNone:
		return ErrNotPlaced
	case StatusCancelled:
		return ErrCancelled
	case StatusShipped:
		return ErrShipped
	}
	return nil
}

// apply records one event in the state.
func apply(o *Order, event Event) {
	switch e := event.(type) {
	case OrderPlaced:
		o.Status, o.Customer, o.Lines = StatusPlaced, e.Customer, slices.Clone(e.Lines)
	case OrderCancelled:
		o.Status, o.CancelReason = StatusCancelled, e.Reason
	case OrderShipped:
		o.Status, o.Carrier = StatusShipped, e.Carrier
	}
}

// newRegistry names the event types for storage.
func newRegistry() (*persistence.Registry, error) {
	reg := persistence.NewRegistry()
	err := errors.Join(
		persistence.Register[OrderPlaced](reg, "order.placed"),
		persistence.Register[OrderCancelled](reg, "order.cancelled"),
		persistence.Register[OrderShipped](reg, "order.shipped"),
	)
	if err != nil {
		return nil, fmt.Errorf("register order events: %w", err)
	}
	return reg, nil
}

// newDefinition returns the order aggregate.
func newDefinition() (aggregate.Definition[Order, Command, Event, Env], error) {
	reg, err := newRegistry()
	if err != nil {
		return aggregate.Definition[Order, Command, Event, Env]{}, err
	}
	return aggregate.Definition[Order, Command, Event, Env]{
		Type:   "order",
		Handle: handle,
		Apply:  apply,
		Events: reg,
		// Snapshots are JSON (the default for a plain struct). Bump the
		// schema version whenever Order's encoding changes: older
		// snapshots are then ignored and streams replayed.
		Snapshots: persistence.SnapshotCodec[Order]{SchemaVersion: 1},
		// Apply replaces Lines rather than changing it in place, so a
		// shallow copy would be safe today; cloning keeps it safe when apply
		// changes.
		Clone: func(o Order) Order {
			o.Lines = slices.Clone(o.Lines)
			return o
		},
	}, nil
}

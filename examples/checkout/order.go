package main

// The order aggregate: what the customer asked for, and whether the shop
// has confirmed or cancelled it. The checkout saga starts on OrderPlaced
// and ends by confirming or cancelling the order:
//
//	(none) --PlaceOrder--> placed --ConfirmOrder--> confirmed
//	                          \
//	                           --CancelOrder--> cancelled

import (
	"errors"
	"fmt"
	"strings"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// orderType names the aggregate type: an order's stream is "order/<id>".
const orderType = "order"

// OrderStatus is where an order is in its life; an order never placed has
// StatusNone.
type OrderStatus string

// The order statuses.
const (
	StatusNone      OrderStatus = ""
	StatusPlaced    OrderStatus = "placed"
	StatusConfirmed OrderStatus = "confirmed"
	StatusCancelled OrderStatus = "cancelled"
)

// Order is the state of one order. It is made of values, so the default
// plain-assignment clone is a full copy.
type Order struct {
	ID       string
	Status   OrderStatus
	Customer string
	SKU      string
	Quantity int
	Amount   Money
	Card     string
	Reason   string // why it was cancelled
}

// OrderCommand is what a customer (PlaceOrder) or the checkout saga
// (ConfirmOrder, CancelOrder) asks of an order.
type OrderCommand interface{ isOrderCommand() }

type (
	// PlaceOrder places an order for Quantity units of SKU, paid by Card.
	PlaceOrder struct {
		Customer string
		SKU      string
		Quantity int
		Amount   Money
		Card     string
	}
	// ConfirmOrder confirms a placed order: stock is held and paid for.
	ConfirmOrder struct{}
	// CancelOrder cancels a placed order.
	CancelOrder struct{ Reason string }
)

func (PlaceOrder) isOrderCommand()   {}
func (ConfirmOrder) isOrderCommand() {}
func (CancelOrder) isOrderCommand()  {}

// OrderEvent is what happened to an order. The json tags and the names in
// registerOrderEvents are the stored schema.
type OrderEvent interface{ isOrderEvent() }

type (
	// OrderPlaced starts a checkout. It names its order so that the saga
	// can route it: a saga's Route sees the event, not its stream.
	OrderPlaced struct {
		Order    string `json:"order"`
		Customer string `json:"customer"`
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
		Amount   Money  `json:"amount"`
		Card     string `json:"card"`
	}
	// OrderConfirmed records the confirmation.
	OrderConfirmed struct{}
	// OrderCancelled records a cancellation and its reason.
	OrderCancelled struct {
		Reason string `json:"reason"`
	}
)

func (OrderPlaced) isOrderEvent()    {}
func (OrderConfirmed) isOrderEvent() {}
func (OrderCancelled) isOrderEvent() {}

// The event type names of orders, as stored.
const (
	orderPlacedType    = "order.placed"
	orderConfirmedType = "order.confirmed"
	orderCancelledType = "order.cancelled"
)

// Business rules an order command can break.
var (
	ErrNoCustomer     = errors.New("an order needs a customer")
	ErrNoSKU          = errors.New("an order needs a SKU")
	ErrBadQuantity    = errors.New("quantity must be positive")
	ErrBadAmount      = errors.New("amount must be positive")
	ErrNoCard         = errors.New("an order needs a card")
	ErrAlreadyPlaced  = errors.New("order already placed")
	ErrNotPlaced      = errors.New("order is not placed")
	ErrOrderCancelled = errors.New("order is cancelled")
	ErrOrderConfirmed = errors.New("order is confirmed")
)

// newOrderDefinition declares the order aggregate.
func newOrderDefinition() (aggregate.Definition[Order, OrderCommand, OrderEvent, struct{}], error) {
	reg := persistence.NewRegistry()
	if err := errors.Join(
		persistence.Register[OrderPlaced](reg, orderPlacedType),
		persistence.Register[OrderConfirmed](reg, orderConfirmedType),
		persistence.Register[OrderCancelled](reg, orderCancelledType),
	); err != nil {
		return aggregate.Definition[Order, OrderCommand, OrderEvent, struct{}]{}, err
	}
	return aggregate.Definition[Order, OrderCommand, OrderEvent, struct{}]{
		Type:    orderType,
		Initial: func(id string) Order { return Order{ID: id} },
		Handle:  handleOrder,
		Apply:   applyOrder,
		Events:  reg,
	}, nil
}

// handleOrder decides an order command.
func handleOrder(o Order, c OrderCommand, _ struct{}) (aggregate.Decision[OrderCommand, OrderEvent], error) {
	reject := aggregate.Reject[OrderCommand, OrderEvent]
	emit := aggregate.Emit[OrderCommand, OrderEvent]
	switch c := c.(type) {
	case PlaceOrder:
		var errs []error
		if o.Status != StatusNone {
			return reject(ErrAlreadyPlaced)
		}
		if strings.TrimSpace(c.Customer) == "" {
			errs = append(errs, ErrNoCustomer)
		}
		if strings.TrimSpace(c.SKU) == "" {
			errs = append(errs, ErrNoSKU)
		}
		if c.Quantity <= 0 {
			errs = append(errs, ErrBadQuantity)
		}
		if c.Amount <= 0 {
			errs = append(errs, ErrBadAmount)
		}
		if c.Card == "" {
			errs = append(errs, ErrNoCard)
		}
		if err := errors.Join(errs...); err != nil {
			return reject(err)
		}
		return emit(OrderPlaced{Order: o.ID, Customer: c.Customer, SKU: c.SKU, Quantity: c.Quantity, Amount: c.Amount, Card: c.Card}), nil
	case ConfirmOrder:
		if err := o.mustBePlaced(); err != nil {
			return reject(err)
		}
		return emit(OrderConfirmed{}), nil
	case CancelOrder:
		if err := o.mustBePlaced(); err != nil {
			return reject(err)
		}
		return emit(OrderCancelled(c)), nil
	}
	return reject(fmt.Errorf("unknown order command %T", c))
}

// mustBePlaced refuses to move an order that is not open any more.
func (o Order) mustBePlaced() error {
	switch o.Status {
	case StatusNone:
		return ErrNotPlaced
	case StatusCancelled:
		return ErrOrderCancelled
	case StatusConfirmed:
		return ErrOrderConfirmed
	}
	return nil
}

// applyOrder evolves an order by one event.
func applyOrder(o *Order, e OrderEvent) {
	switch e := e.(type) {
	case OrderPlaced:
		o.Status, o.Customer, o.SKU, o.Quantity, o.Amount, o.Card = StatusPlaced, e.Customer, e.SKU, e.Quantity, e.Amount, e.Card
	case OrderConfirmed:
		o.Status = StatusConfirmed
	case OrderCancelled:
		o.Status, o.Reason = StatusCancelled, e.Reason
	}
}

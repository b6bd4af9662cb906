package main

// The inventory aggregate: the stock of one SKU, named after it. Reserve
// holds units for an order when they are on hand; when they are not, the
// reservation waits in line (ReservationPending) until Restock brings
// enough (StockArrived, then ReservationConfirmed for each waiting order
// that now fits, oldest first). Release gives held units back, or drops a
// waiting reservation — the checkout saga's compensation of Reserve.
//
// The checkout saga learns whether its reservation is held from these
// events, on the bus: the outcome of its Reserve command says only that the
// command was accepted, held or waiting.

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// inventoryType names the aggregate type: a SKU's stream is
// "inventory/<sku>".
const inventoryType = "inventory"

// Inventory is the stock of one SKU.
type Inventory struct {
	OnHand  int            // units in the warehouse held for nobody
	Held    map[string]int // units held, by order
	Waiting []Waiting      // reservations waiting for stock, oldest first
}

// Waiting is a reservation waiting for stock.
type Waiting struct {
	Order    string
	Quantity int
}

// cloneInventory copies an Inventory: Apply runs on a copy.
func cloneInventory(i Inventory) Inventory {
	i.Held = maps.Clone(i.Held)
	i.Waiting = slices.Clone(i.Waiting)
	return i
}

// InventoryCommand is what the warehouse (Restock) or the checkout saga
// (Reserve, Release) asks of a SKU's stock.
type InventoryCommand interface{ isInventoryCommand() }

type (
	// Restock adds units that arrived at the warehouse.
	Restock struct{ Quantity int }
	// Reserve holds Quantity units for Order, or queues the request.
	Reserve struct {
		Order    string
		Quantity int
	}
	// Release gives back what Order holds, or drops its waiting request.
	Release struct{ Order string }
)

func (Restock) isInventoryCommand() {}
func (Reserve) isInventoryCommand() {}
func (Release) isInventoryCommand() {}

// InventoryEvent is what happened to a SKU's stock. The events about a
// reservation name their order, for the saga's routing.
type InventoryEvent interface{ isInventoryEvent() }

type (
	// StockArrived records units added to the warehouse.
	StockArrived struct {
		Quantity int `json:"quantity"`
	}
	// Reserved records units held for an order at once.
	Reserved struct {
		Order    string `json:"order"`
		Quantity int    `json:"quantity"`
	}
	// ReservationPending records a reservation that waits for stock: Short
	// units must arrive before it can be held.
	ReservationPending struct {
		Order    string `json:"order"`
		Quantity int    `json:"quantity"`
		Short    int    `json:"short"`
	}
	// ReservationConfirmed records a waiting reservation now held.
	ReservationConfirmed struct {
		Order    string `json:"order"`
		Quantity int    `json:"quantity"`
	}
	// Released records held units given back (or, with Pending, a waiting
	// reservation dropped).
	Released struct {
		Order    string `json:"order"`
		Quantity int    `json:"quantity"`
		Pending  bool   `json:"pending,omitempty"`
	}
)

func (StockArrived) isInventoryEvent()         {}
func (Reserved) isInventoryEvent()             {}
func (ReservationPending) isInventoryEvent()   {}
func (ReservationConfirmed) isInventoryEvent() {}
func (Released) isInventoryEvent()             {}

// The event type names the checkout saga reads, as stored.
const (
	reservedType             = "inventory.reserved"
	reservationConfirmedType = "inventory.reservation-confirmed"
)

// Business rules an inventory command can break.
var (
	ErrAlreadyReserved = errors.New("order already has a reservation")
	ErrNoReservation   = errors.New("order has no reservation")
)

// newInventoryDefinition declares the inventory aggregate.
func newInventoryDefinition() (aggregate.Definition[Inventory, InventoryCommand, InventoryEvent, struct{}], error) {
	reg := persistence.NewRegistry()
	if err := errors.Join(
		persistence.Register[StockArrived](reg, "inventory.stock-arrived"),
		persistence.Register[Reserved](reg, reservedType),
		persistence.Register[ReservationPending](reg, "inventory.reservation-pending"),
		persistence.Register[ReservationConfirmed](reg, reservationConfirmedType),
		persistence.Register[Released](reg, "inventory.released"),
	); err != nil {
		return aggregate.Definition[Inventory, InventoryCommand, InventoryEvent, struct{}]{}, err
	}
	return aggregate.Definition[Inventory, InventoryCommand, InventoryEvent, struct{}]{
		Type:   inventoryType,
		Handle: handleInventory,
		Apply:  applyInventory,
		Events: reg,
		Clone:  cloneInventory,
	}, nil
}

// handleInventory decides an inventory command.
func handleInventory(inv Inventory, c InventoryCommand, _ struct{}) (aggregate.Decision[InventoryCommand, InventoryEvent], error) {
	reject := aggregate.Reject[InventoryCommand, InventoryEvent]
	emit := aggregate.Emit[InventoryCommand, InventoryEvent]
	switch c := c.(type) {
	case Restock:
		if c.Quantity <= 0 {
			return reject(ErrBadQuantity)
		}
		return emit(append([]InventoryEvent{StockArrived(c)}, serve(inv.Waiting, inv.OnHand+c.Quantity)...)...), nil
	case Reserve:
		switch {
		case c.Quantity <= 0:
			return reject(ErrBadQuantity)
		case inv.Held[c.Order] > 0 || waitingIndex(inv.Waiting, c.Order) >= 0:
			return reject(ErrAlreadyReserved)
		}
		queued := 0
		for _, w := range inv.Waiting {
			queued += w.Quantity
		}
		if queued == 0 && c.Quantity <= inv.OnHand {
			return emit(Reserved(c)), nil
		}
		// Wait in line: those ahead are served first.
		return emit(ReservationPending{Order: c.Order, Quantity: c.Quantity, Short: queued + c.Quantity - inv.OnHand}), nil
	case Release:
		if held := inv.Held[c.Order]; held > 0 {
			return emit(append([]InventoryEvent{Released{Order: c.Order, Quantity: held}}, serve(inv.Waiting, inv.OnHand+held)...)...), nil
		}
		i := waitingIndex(inv.Waiting, c.Order)
		if i < 0 {
			return reject(ErrNoReservation)
		}
		rest := slices.Delete(slices.Clone(inv.Waiting), i, i+1)
		return emit(append([]InventoryEvent{Released{Order: c.Order, Quantity: inv.Waiting[i].Quantity, Pending: true}}, serve(rest, inv.OnHand)...)...), nil
	}
	return reject(fmt.Errorf("unknown inventory command %T", c))
}

// serve confirms waiting reservations, oldest first, while onHand covers
// them; it stops at the first that does not fit, so nobody jumps the line.
func serve(waiting []Waiting, onHand int) []InventoryEvent {
	var events []InventoryEvent
	for _, w := range waiting {
		if w.Quantity > onHand {
			break
		}
		onHand -= w.Quantity
		events = append(events, ReservationConfirmed(w))
	}
	return events
}

func waitingIndex(waiting []Waiting, order string) int {
	return slices.IndexFunc(waiting, func(w Waiting) bool { return w.Order == order })
}

// applyInventory evolves a SKU's stock by one event.
func applyInventory(inv *Inventory, e InventoryEvent) {
	hold := func(order string, n int) {
		if inv.Held == nil {
			inv.Held = map[string]int{}
		}
		inv.OnHand -= n
		inv.Held[order] = n
	}
	switch e := e.(type) {
	case StockArrived:
		inv.OnHand += e.Quantity
	case Reserved:
		hold(e.Order, e.Quantity)
	case ReservationPending:
		inv.Waiting = append(inv.Waiting, Waiting{Order: e.Order, Quantity: e.Quantity})
	case ReservationConfirmed:
		inv.Waiting = slices.DeleteFunc(inv.Waiting, func(w Waiting) bool { return w.Order == e.Order })
		hold(e.Order, e.Quantity)
	case Released:
		if e.Pending {
			inv.Waiting = slices.DeleteFunc(inv.Waiting, func(w Waiting) bool { return w.Order == e.Order })
			return
		}
		inv.OnHand += inv.Held[e.Order]
		delete(inv.Held, e.Order)
	}
}

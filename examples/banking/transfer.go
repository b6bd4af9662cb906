package main

// The transfer aggregate records a customer's request to move money. It
// moves nothing itself: its TransferRequested event, once stored, is
// published by the relay and starts the transfer saga (saga.go), which
// debits and credits the accounts. Keeping the request in an aggregate of
// its own makes it durable and idempotent before any money moves.

import (
	"errors"
	"fmt"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// transferType names the aggregate type: a transfer's stream is
// "transfer/<id>", published to the topic "events.transfer".
const transferType = "transfer"

// Transfer is the state of one transfer request.
type Transfer struct {
	ID        string
	From, To  string
	Amount    Money
	Requested bool
}

// TransferCommand is what a caller can ask of a transfer.
type TransferCommand interface{ isTransferCommand() }

// RequestTransfer asks to move Amount (positive) from one account to
// another, different one. A transfer is requested once.
type RequestTransfer struct {
	From, To string
	Amount   Money
}

func (RequestTransfer) isTransferCommand() {}

// TransferEvent is what happened to a transfer.
type TransferEvent interface{ isTransferEvent() }

// TransferRequested records a request. It carries everything the saga
// needs, the transfer's id included: sagas never query for more.
type TransferRequested struct {
	Transfer string `json:"transfer"`
	From     string `json:"from"`
	To       string `json:"to"`
	Amount   Money  `json:"amount"`
}

func (TransferRequested) isTransferEvent() {}

// The rules of a request; a rejected command's error matches one of these
// and aggregate.ErrRejected.
var (
	// ErrNoParties rejects a request without a source or a target.
	ErrNoParties = errors.New("source and target accounts are required")
	// ErrSameAccount rejects a transfer from an account to itself.
	ErrSameAccount = errors.New("source and target must differ")
	// ErrAlreadyRequested rejects requesting a transfer twice.
	ErrAlreadyRequested = errors.New("transfer was already requested")
)

// handleTransfer decides a request.
func handleTransfer(t Transfer, cmd TransferCommand, _ struct{}) (aggregate.Decision[TransferCommand, TransferEvent], error) {
	c, ok := cmd.(RequestTransfer)
	switch {
	case !ok:
		return aggregate.Reject[TransferCommand, TransferEvent](fmt.Errorf("unknown command %T", cmd))
	case c.From == "" || c.To == "":
		return aggregate.Reject[TransferCommand, TransferEvent](ErrNoParties)
	case c.From == c.To:
		return aggregate.Reject[TransferCommand, TransferEvent](ErrSameAccount)
	case c.Amount <= 0:
		return aggregate.Reject[TransferCommand, TransferEvent](fmt.Errorf("%w (got %s)", ErrBadAmount, c.Amount))
	case t.Requested:
		return aggregate.Reject[TransferCommand, TransferEvent](ErrAlreadyRequested)
	}
	return aggregate.Emit[TransferCommand, TransferEvent](TransferRequested{Transfer: t.ID, From: c.From, To: c.To, Amount: c.Amount}), nil
}

// applyTransfer records one event in the state.
func applyTransfer(t *Transfer, event TransferEvent) {
	if e, ok := event.(TransferRequested); ok {
		t.From, t.To, t.Amount, t.Requested = e.From, e.To, e.Amount, true
	}
}

// registerTransferEvents names the event types for storage. The saga's
// registry registers them too, under the same names, to decode what the
// relay publishes.
func registerTransferEvents(reg *persistence.Registry) error {
	return persistence.Register[TransferRequested](reg, "transfer.requested")
}

// newTransferDefinition returns the transfer aggregate.
func newTransferDefinition() (aggregate.Definition[Transfer, TransferCommand, TransferEvent, struct{}], error) {
	reg := persistence.NewRegistry()
	if err := registerTransferEvents(reg); err != nil {
		return aggregate.Definition[Transfer, TransferCommand, TransferEvent, struct{}]{}, fmt.Errorf("register transfer events: %w", err)
	}
	return aggregate.Definition[Transfer, TransferCommand, TransferEvent, struct{}]{
		Type: transferType,
		// The state knows its own id, so that the event can carry it.
		Initial:   func(id string) Transfer { return Transfer{ID: id} },
		Handle:    handleTransfer,
		Apply:     applyTransfer,
		Events:    reg,
		Snapshots: persistence.SnapshotCodec[Transfer]{SchemaVersion: 1},
	}, nil
}

package saga_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// A wallet aggregate and a transfer saga: debit, wait for approval (with a
// deadline), credit; a failed credit or a missed deadline refunds the
// debit.

type wallet struct {
	Balance int
	Closed  bool
}

type walletCmd interface{ isWalletCmd() }

type (
	Debit  struct{ Amount int }
	Credit struct {
		Amount int
		Fail   bool // the receiving wallet refuses, for the compensation path
	}
	// Close and Reopen a wallet: a closed one refuses credits and debits,
	// a failure that lasts until someone reopens it.
	Close  struct{}
	Reopen struct{}
)

func (Debit) isWalletCmd()  {}
func (Credit) isWalletCmd() {}
func (Close) isWalletCmd()  {}
func (Reopen) isWalletCmd() {}

type walletEvent interface{ isWalletEvent() }

type (
	Debited  struct{ Amount int }
	Credited struct{ Amount int }
	Closed   struct{}
	Reopened struct{}
)

func (Debited) isWalletEvent()  {}
func (Credited) isWalletEvent() {}
func (Closed) isWalletEvent()   {}
func (Reopened) isWalletEvent() {}

var errInsufficient = errors.New("insufficient funds")

func walletDefinition() aggregate.Definition[wallet, walletCmd, walletEvent, struct{}] {
	reg := persistence.NewRegistry()
	must(persistence.Register[Debited](reg, "wallet.debited"))
	must(persistence.Register[Credited](reg, "wallet.credited"))
	must(persistence.Register[Closed](reg, "wallet.closed"))
	must(persistence.Register[Reopened](reg, "wallet.reopened"))
	return aggregate.Definition[wallet, walletCmd, walletEvent, struct{}]{
		Type:    "wallet",
		Initial: func(string) wallet { return wallet{Balance: 100} },
		Handle: func(w wallet, c walletCmd, _ struct{}) (aggregate.Decision[walletCmd, walletEvent], error) {
			if _, reopen := c.(Reopen); w.Closed && !reopen {
				return aggregate.Reject[walletCmd, walletEvent](errors.New("account closed"))
			}
			switch c := c.(type) {
			case Close:
				return aggregate.Emit[walletCmd, walletEvent](Closed{}), nil
			case Reopen:
				return aggregate.Emit[walletCmd, walletEvent](Reopened{}), nil
			case Debit:
				if c.Amount > w.Balance {
					return aggregate.Reject[walletCmd, walletEvent](errInsufficient)
				}
				return aggregate.Emit[walletCmd, walletEvent](Debited(c)), nil
			case Credit:
				if c.Fail {
					return aggregate.Reject[walletCmd, walletEvent](errors.New("account closed"))
				}
				return aggregate.Emit[walletCmd, walletEvent](Credited{Amount: c.Amount}), nil
			}
			return aggregate.Reject[walletCmd, walletEvent](fmt.Errorf("unknown %T", c))
		},
		Apply: func(w *wallet, e walletEvent) {
			switch e := e.(type) {
			case Debited:
				w.Balance -= e.Amount
			case Credited:
				w.Balance += e.Amount
			case Closed:
				w.Closed = true
			case Reopened:
				w.Closed = false
			}
		},
		Events: reg,
	}
}

// Domain events the saga reads from the bus.
type (
	TransferRequested struct {
		Transfer, From, To string
		Amount             int
		FailCredit         bool
		Policy             saga.FailurePolicy
		// RefundPolicy is the refund's (the debit's compensation's).
		RefundPolicy saga.FailurePolicy
	}
	TransferApproved struct{ Transfer string }
	// TransferNoted adds a note to a running transfer.
	TransferNoted struct{ Transfer, Note string }
	// Explode makes the saga's Handle fail unexpectedly.
	Explode struct {
		Transfer string
		Panic    bool
	}
)

// The saga's own events.
type (
	Started struct {
		From, To   string
		Amount     int
		FailCredit bool
		Policy     saga.FailurePolicy
	}
	Approved struct{}
	Noted    struct{ Note string }
)

type transfer struct {
	From, To   string
	Amount     int
	FailCredit bool
	Policy     saga.FailurePolicy
	Approved   bool
	Notes      []string
}

func transferDefinition() saga.Definition[transfer, any, struct{}] {
	events := persistence.NewRegistry()
	must(persistence.Register[TransferRequested](events, "transfer.requested"))
	must(persistence.Register[TransferApproved](events, "transfer.approved"))
	must(persistence.Register[Explode](events, "transfer.explode"))
	must(persistence.Register[TransferNoted](events, "transfer.noted"))
	must(persistence.Register[Noted](events, "transfer-saga.noted"))
	must(persistence.Register[Started](events, "transfer-saga.started"))
	must(persistence.Register[Approved](events, "transfer-saga.approved"))
	commands := persistence.NewRegistry()
	must(persistence.Register[Debit](commands, "wallet.debit"))
	must(persistence.Register[Credit](commands, "wallet.credit"))

	return saga.Definition[transfer, any, struct{}]{
		Type:     "transfer",
		Topics:   []string{"events.transfer"},
		Events:   events,
		Commands: commands,
		Route: func(e any, _ map[string]string) saga.Route {
			switch e := e.(type) {
			case TransferRequested:
				return saga.Route{Mode: saga.Start, ID: e.Transfer}
			case TransferApproved:
				return saga.Route{Mode: saga.Continue, ID: e.Transfer}
			case Explode:
				return saga.Route{Mode: saga.Continue, ID: e.Transfer}
			case TransferNoted:
				return saga.Route{Mode: saga.Continue, ID: e.Transfer}
			}
			return saga.Route{}
		},
		Handle: func(s transfer, in saga.Input, _ struct{}) (saga.Decision[any], error) {
			switch e := in.Event.(type) {
			case TransferRequested:
				return saga.Decision[any]{
					Events: []any{Started{From: e.From, To: e.To, Amount: e.Amount, FailCredit: e.FailCredit, Policy: e.Policy}},
					Dispatch: []saga.Command{{
						Step: "debit", Aggregate: "wallet", ID: e.From, Command: Debit{Amount: e.Amount}, OnFailure: e.Policy,
						Compensation: &saga.Command{Step: "refund", Aggregate: "wallet", ID: e.From, Command: Credit{Amount: e.Amount}, OnFailure: e.RefundPolicy},
					}},
					Schedule: []saga.Timer{{Name: "deadline", After: time.Minute}},
				}, nil
			case TransferApproved:
				return saga.Decision[any]{
					Events:   []any{Approved{}},
					Dispatch: []saga.Command{{Step: "credit", Aggregate: "wallet", ID: s.To, Command: Credit{Amount: s.Amount, Fail: s.FailCredit}, OnFailure: s.Policy}},
				}, nil
			case TransferNoted:
				return saga.Decision[any]{Events: []any{Noted{Note: e.Note}}}, nil
			case Explode:
				if e.Panic {
					panic("saga bug")
				}
				return saga.Decision[any]{}, errors.New("saga bug")
			}
			if in.Timer == "deadline" {
				// Cancelling the timer that fired is harmless: nothing is
				// recorded for it.
				return saga.Decision[any]{Cancel: []string{"deadline"}, Compensate: "approval deadline missed"}, nil
			}
			if r := in.Result; r != nil {
				switch {
				case r.Step == "debit" && errors.Is(r.Err, aggregate.ErrRejected):
					return saga.Decision[any]{Cancel: []string{"deadline"}, Fail: "debit refused: " + r.Err.Error()}, nil
				case r.Step == "debit" && r.Err != nil:
					return saga.Decision[any]{Cancel: []string{"deadline"}, Fail: "debit failed: " + r.Err.Error()}, nil
				case r.Step == "credit" && r.Err != nil:
					return saga.Decision[any]{Compensate: "credit failed: " + r.Err.Error()}, nil
				case r.Step == "credit":
					return saga.Decision[any]{Cancel: []string{"deadline"}, Complete: true}, nil
				}
			}
			return saga.Decision[any]{}, nil
		},
		Apply: func(s *transfer, e any) {
			switch e := e.(type) {
			case Started:
				s.From, s.To, s.Amount, s.FailCredit, s.Policy = e.From, e.To, e.Amount, e.FailCredit, e.Policy
			case Approved:
				s.Approved = true
			case Noted:
				s.Notes = append(s.Notes, e.Note)
			}
		},
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

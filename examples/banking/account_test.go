package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func accountDefinition(t *testing.T) aggregate.Definition[Account, AccountCommand, AccountEvent, struct{}] {
	t.Helper()
	def, err := newAccountDefinition()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

type accountScenario = testkit.Scenario[Account, AccountCommand, AccountEvent, struct{}]

var opened = AccountOpened{Owner: "Ada"}

// TestAccountRules checks every rule of the account on the pure functions
// and through a live aggregate actor (testkit.Both).
func TestAccountRules(t *testing.T) {
	balance := func(m Money) func(*Account) { return func(a *Account) { a.Balance = m } }
	tests := []struct {
		name  string
		given []AccountEvent
		steps func(sc *accountScenario)
	}{
		{"opening records the owner", nil, func(sc *accountScenario) {
			sc.When(OpenAccount{Owner: "Ada"}).Then(opened).ThenState(func(a *Account) { a.Owner, a.Status = "Ada", StatusOpen })
		}},
		{"opening needs an owner", nil, func(sc *accountScenario) {
			sc.When(OpenAccount{}).ThenError(ErrNoOwner).ThenUnchanged()
		}},
		{"an account opens once", []AccountEvent{opened}, func(sc *accountScenario) {
			sc.When(OpenAccount{Owner: "Bob"}).ThenError(ErrAlreadyOpen).ThenUnchanged()
		}},
		{"an account never opened refuses money", nil, func(sc *accountScenario) {
			sc.When(Deposit{Amount: 1}).ThenError(ErrNoAccount)
			sc.When(Credit{Transfer: "t", Amount: 1}).ThenError(ErrNoAccount).ThenUnchanged()
		}},
		{"amounts must be positive", []AccountEvent{opened, Deposited{Amount: 10}}, func(sc *accountScenario) {
			for _, cmd := range []AccountCommand{Deposit{}, Withdraw{Amount: -1}, Debit{Transfer: "t"}, Credit{Transfer: "t", Amount: -5}, Refund{Transfer: "t"}} {
				sc.When(cmd).ThenError(ErrBadAmount).ThenUnchanged()
			}
		}},
		{"cash in and out", []AccountEvent{opened}, func(sc *accountScenario) {
			sc.When(Deposit{Amount: 100}).Then(Deposited{Amount: 100}).ThenState(balance(100))
			sc.When(Withdraw{Amount: 40}).Then(Withdrawn{Amount: 40}).ThenState(balance(60))
		}},
		{"no withdrawal or debit beyond the balance", []AccountEvent{opened, Deposited{Amount: 50}}, func(sc *accountScenario) {
			sc.When(Withdraw{Amount: 51}).ThenError(ErrInsufficientFunds).ThenUnchanged()
			sc.When(Debit{Transfer: "t", Amount: 51}).ThenError(ErrInsufficientFunds).ThenUnchanged()
			sc.When(Debit{Transfer: "t", Amount: 50}).Then(Debited{Transfer: "t", Amount: 50}).ThenState(balance(0))
		}},
		{"a transfer's legs move the balance", []AccountEvent{opened, Deposited{Amount: 50}}, func(sc *accountScenario) {
			sc.When(Debit{Transfer: "t1", Amount: 20}).Then(Debited{Transfer: "t1", Amount: 20}).ThenState(balance(30))
			sc.When(Refund{Transfer: "t1", Amount: 20}).Then(Refunded{Transfer: "t1", Amount: 20}).ThenState(balance(50))
			sc.When(Credit{Transfer: "t2", Amount: 5}).Then(Credited{Transfer: "t2", Amount: 5}).ThenState(balance(55))
		}},
		{"a frozen account moves no money but takes refunds", []AccountEvent{opened, Deposited{Amount: 50}}, func(sc *accountScenario) {
			sc.When(FreezeAccount{Reason: "fraud check"}).Then(AccountFrozen{Reason: "fraud check"}).ThenState(func(a *Account) { a.Status = StatusFrozen })
			for _, cmd := range []AccountCommand{Deposit{Amount: 1}, Withdraw{Amount: 1}, Debit{Transfer: "t", Amount: 1}, Credit{Transfer: "t", Amount: 1}, FreezeAccount{}} {
				sc.When(cmd).ThenError(ErrFrozen).ThenUnchanged()
			}
			sc.When(Refund{Transfer: "t", Amount: 5}).Then(Refunded{Transfer: "t", Amount: 5}).ThenState(balance(55))
		}},
		{"a closed account refuses everything", []AccountEvent{opened, AccountClosed{}}, func(sc *accountScenario) {
			for _, cmd := range []AccountCommand{Deposit{Amount: 1}, Credit{Transfer: "t", Amount: 1}, Refund{Transfer: "t", Amount: 1}, FreezeAccount{}, CloseAccount{}} {
				sc.When(cmd).ThenError(ErrClosed).ThenUnchanged()
			}
			sc.When(OpenAccount{Owner: "Ada"}).ThenError(ErrAlreadyOpen)
		}},
		{"only an empty account closes", []AccountEvent{opened, Deposited{Amount: 1}}, func(sc *accountScenario) {
			sc.When(CloseAccount{}).ThenError(ErrBalanceNotZero).ThenUnchanged()
			sc.When(Withdraw{Amount: 1}).Then(Withdrawn{Amount: 1})
			sc.When(CloseAccount{}).Then(AccountClosed{}).ThenState(func(a *Account) { a.Balance, a.Status = 0, StatusClosed })
		}},
		{"a frozen account closes when empty", []AccountEvent{opened, AccountFrozen{}}, func(sc *accountScenario) {
			sc.When(CloseAccount{}).Then(AccountClosed{}).ThenState(func(a *Account) { a.Status = StatusClosed })
		}},
	}
	def := accountDefinition(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testkit.Both(t, def, tt.given, tt.steps) })
	}
}

type transferScenario = testkit.Scenario[Transfer, TransferCommand, TransferEvent, struct{}]

// TestTransferRules checks the rules of a transfer request. testkit's
// scenarios run the aggregate with the id "scenario", which the event
// carries.
func TestTransferRules(t *testing.T) {
	req := RequestTransfer{From: "alice", To: "bob", Amount: 30_00}
	requested := TransferRequested{Transfer: "scenario", From: "alice", To: "bob", Amount: 30_00}
	tests := []struct {
		name  string
		given []TransferEvent
		steps func(sc *transferScenario)
	}{
		{"a request records everything the saga needs", nil, func(sc *transferScenario) {
			sc.When(req).Then(requested).ThenState(func(tr *Transfer) {
				tr.From, tr.To, tr.Amount, tr.Requested = "alice", "bob", 30_00, true
			})
		}},
		{"a request names both accounts", nil, func(sc *transferScenario) {
			sc.When(RequestTransfer{To: "bob", Amount: 1}).ThenError(ErrNoParties).ThenUnchanged()
			sc.When(RequestTransfer{From: "alice", Amount: 1}).ThenError(ErrNoParties).ThenUnchanged()
		}},
		{"no transfer to the same account", nil, func(sc *transferScenario) {
			sc.When(RequestTransfer{From: "alice", To: "alice", Amount: 1}).ThenError(ErrSameAccount).ThenUnchanged()
		}},
		{"the amount must be positive", nil, func(sc *transferScenario) {
			sc.When(RequestTransfer{From: "alice", To: "bob"}).ThenError(ErrBadAmount).ThenUnchanged()
		}},
		{"a transfer is requested once", []TransferEvent{requested}, func(sc *transferScenario) {
			sc.When(req).ThenError(ErrAlreadyRequested).ThenUnchanged()
		}},
	}
	def, err := newTransferDefinition()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testkit.Both(t, def, tt.given, tt.steps) })
	}
}

package main

// The account aggregate: the rules of one bank account, as pure functions.
// (examples/todo explains the parts of an aggregate step by step.) An
// account goes
//
//	(none) --OpenAccount--> open --FreezeAccount--> frozen
//	                          \                       /
//	                           --CloseAccount--> closed (balance zero)
//
// Money leaves an open account by Withdraw (cash) or Debit (a transfer's
// first leg) and never below zero; it arrives by Deposit (cash) or Credit
// (a transfer's second leg), which a frozen or closed account refuses, or by
// Refund, which undoes a Debit and which a frozen account still accepts: a
// freeze stops money leaving, not coming back.

import (
	"errors"
	"fmt"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// accountType names the aggregate type: an account's stream is
// "account/<id>", and the saga addresses its commands to this type.
const accountType = "account"

// AccountStatus is where an account is in its life. An account that was
// never opened has StatusNone.
type AccountStatus string

// The statuses.
const (
	StatusNone   AccountStatus = ""
	StatusOpen   AccountStatus = "open"
	StatusFrozen AccountStatus = "frozen"
	StatusClosed AccountStatus = "closed"
)

// Account is the state of one account. Snapshots store it as JSON.
type Account struct {
	Owner   string
	Balance Money
	Status  AccountStatus
}

// AccountCommand is what a caller — a teller or the transfer saga — can
// ask of an account.
type AccountCommand interface{ isAccountCommand() }

type (
	// OpenAccount opens an account for an owner (required), once.
	OpenAccount struct{ Owner string }
	// Deposit pays cash in.
	Deposit struct{ Amount Money }
	// Withdraw pays cash out, within the balance.
	Withdraw struct{ Amount Money }
	// Debit takes a transfer's amount from its source, within the balance.
	Debit struct {
		Transfer string
		Amount   Money
	}
	// Credit pays a transfer's amount to its target.
	Credit struct {
		Transfer string
		Amount   Money
	}
	// Refund gives back what a Debit took, when its transfer fails.
	Refund struct {
		Transfer string
		Amount   Money
	}
	// FreezeAccount stops money moving, except refunds.
	FreezeAccount struct{ Reason string }
	// CloseAccount closes an open or frozen account whose balance is zero.
	CloseAccount struct{}
)

func (OpenAccount) isAccountCommand()   {}
func (Deposit) isAccountCommand()       {}
func (Withdraw) isAccountCommand()      {}
func (Debit) isAccountCommand()         {}
func (Credit) isAccountCommand()        {}
func (Refund) isAccountCommand()        {}
func (FreezeAccount) isAccountCommand() {}
func (CloseAccount) isAccountCommand()  {}

// AccountEvent is what happened to an account. The json tags and the names
// in registerAccountEvents are the stored schema.
type AccountEvent interface{ isAccountEvent() }

type (
	// AccountOpened records an opening.
	AccountOpened struct {
		Owner string `json:"owner"`
	}
	// Deposited records cash paid in.
	Deposited struct {
		Amount Money `json:"amount"`
	}
	// Withdrawn records cash paid out.
	Withdrawn struct {
		Amount Money `json:"amount"`
	}
	// Debited records a transfer's amount taken.
	Debited struct {
		Transfer string `json:"transfer"`
		Amount   Money  `json:"amount"`
	}
	// Credited records a transfer's amount received.
	Credited struct {
		Transfer string `json:"transfer"`
		Amount   Money  `json:"amount"`
	}
	// Refunded records a debit given back.
	Refunded struct {
		Transfer string `json:"transfer"`
		Amount   Money  `json:"amount"`
	}
	// AccountFrozen records a freeze.
	AccountFrozen struct {
		Reason string `json:"reason,omitempty"`
	}
	// AccountClosed records a closure.
	AccountClosed struct{}
)

func (AccountOpened) isAccountEvent() {}
func (Deposited) isAccountEvent()     {}
func (Withdrawn) isAccountEvent()     {}
func (Debited) isAccountEvent()       {}
func (Credited) isAccountEvent()      {}
func (Refunded) isAccountEvent()      {}
func (AccountFrozen) isAccountEvent() {}
func (AccountClosed) isAccountEvent() {}

// The business rules; a rejected command's error matches one of these and
// aggregate.ErrRejected.
var (
	// ErrNoOwner rejects OpenAccount without an owner.
	ErrNoOwner = errors.New("owner is required")
	// ErrAlreadyOpen rejects opening an account twice.
	ErrAlreadyOpen = errors.New("account already exists")
	// ErrNoAccount rejects any other command for an account never opened.
	ErrNoAccount = errors.New("account does not exist")
	// ErrBadAmount rejects a movement of money that is not positive.
	ErrBadAmount = errors.New("amount must be positive")
	// ErrInsufficientFunds rejects a withdrawal or debit above the balance.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrFrozen rejects moving money on a frozen account (refunds aside),
	// and freezing it again.
	ErrFrozen = errors.New("account is frozen")
	// ErrClosed rejects every command for a closed account.
	ErrClosed = errors.New("account is closed")
	// ErrBalanceNotZero rejects closing an account that holds money.
	ErrBalanceNotZero = errors.New("balance must be zero to close")
)

type accountDecision = aggregate.Decision[AccountCommand, AccountEvent]

// emit accepts a command with one event.
func emit(e AccountEvent) accountDecision { return aggregate.Emit[AccountCommand](e) }

// handleAccount decides a command: its own content first, then the
// account's status, then the balance.
func handleAccount(a Account, cmd AccountCommand, _ struct{}) (accountDecision, error) {
	if c, ok := cmd.(OpenAccount); ok {
		switch {
		case c.Owner == "":
			return accountDecision{}, ErrNoOwner
		case a.Status != StatusNone:
			return accountDecision{}, ErrAlreadyOpen
		}
		return emit(AccountOpened(c)), nil
	}
	if err := checkAmount(cmd); err != nil {
		return accountDecision{}, err
	}
	switch a.Status {
	case StatusNone:
		return accountDecision{}, ErrNoAccount
	case StatusClosed:
		return accountDecision{}, ErrClosed
	case StatusFrozen:
		switch cmd.(type) {
		case Refund, CloseAccount:
		default:
			return accountDecision{}, ErrFrozen
		}
	}
	switch c := cmd.(type) {
	case Deposit:
		return emit(Deposited(c)), nil
	case Withdraw:
		return spend(a, c.Amount, Withdrawn(c))
	case Debit:
		return spend(a, c.Amount, Debited(c))
	case Credit:
		return emit(Credited(c)), nil
	case Refund:
		return emit(Refunded(c)), nil
	case FreezeAccount:
		return emit(AccountFrozen(c)), nil
	case CloseAccount:
		if a.Balance != 0 {
			return accountDecision{}, fmt.Errorf("%w (it is %s)", ErrBalanceNotZero, a.Balance)
		}
		return emit(AccountClosed{}), nil
	}
	return accountDecision{}, fmt.Errorf("unknown command %T", cmd)
}

// checkAmount rejects a movement of money that is not positive.
func checkAmount(cmd AccountCommand) error {
	var amount Money
	switch c := cmd.(type) {
	case Deposit:
		amount = c.Amount
	case Withdraw:
		amount = c.Amount
	case Debit:
		amount = c.Amount
	case Credit:
		amount = c.Amount
	case Refund:
		amount = c.Amount
	default:
		return nil
	}
	if amount <= 0 {
		return fmt.Errorf("%w (got %s)", ErrBadAmount, amount)
	}
	return nil
}

// spend accepts taking amount out when the balance covers it.
func spend(a Account, amount Money, e AccountEvent) (accountDecision, error) {
	if amount > a.Balance {
		return accountDecision{}, fmt.Errorf("%w: balance %s, need %s", ErrInsufficientFunds, a.Balance, amount)
	}
	return emit(e), nil
}

// applyAccount records one event in the state.
func applyAccount(a *Account, event AccountEvent) {
	switch e := event.(type) {
	case AccountOpened:
		a.Owner, a.Status = e.Owner, StatusOpen
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	case Debited:
		a.Balance -= e.Amount
	case Credited:
		a.Balance += e.Amount
	case Refunded:
		a.Balance += e.Amount
	case AccountFrozen:
		a.Status = StatusFrozen
	case AccountClosed:
		a.Status = StatusClosed
	}
}

// registerAccountEvents names the event types for storage.
func registerAccountEvents(reg *persistence.Registry) error {
	return errors.Join(
		persistence.Register[AccountOpened](reg, "account.opened"),
		persistence.Register[Deposited](reg, "account.deposited"),
		persistence.Register[Withdrawn](reg, "account.withdrawn"),
		persistence.Register[Debited](reg, "account.debited"),
		persistence.Register[Credited](reg, "account.credited"),
		persistence.Register[Refunded](reg, "account.refunded"),
		persistence.Register[AccountFrozen](reg, "account.frozen"),
		persistence.Register[AccountClosed](reg, "account.closed"),
	)
}

// newAccountDefinition returns the account aggregate.
func newAccountDefinition() (aggregate.Definition[Account, AccountCommand, AccountEvent, struct{}], error) {
	reg := persistence.NewRegistry()
	if err := registerAccountEvents(reg); err != nil {
		return aggregate.Definition[Account, AccountCommand, AccountEvent, struct{}]{}, fmt.Errorf("register account events: %w", err)
	}
	return aggregate.Definition[Account, AccountCommand, AccountEvent, struct{}]{
		Type:      accountType,
		Handle:    handleAccount,
		Apply:     applyAccount,
		Events:    reg,
		Snapshots: persistence.SnapshotCodec[Account]{SchemaVersion: 1},
	}, nil
}

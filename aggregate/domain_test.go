package aggregate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// A bank account: the aggregate the tests exercise.

type account struct {
	ID      string
	Owner   string
	Balance int
	Holds   int // holds placed by HoldLater effects
}

type command interface{ isCommand() }

type (
	open     struct{ Owner string }
	deposit  struct{ Amount int }
	withdraw struct{ Amount int }
	// holdLater places a hold after a delay, through an effect.
	holdLater struct{ After time.Duration }
	hold      struct{}
	// depositThenHold deposits, and its effect — on a goroutine of its
	// own — sends hold: the follow-up the passivation tests count.
	depositThenHold struct{ Amount int }
	// later sends Then to the same aggregate After a delay (a Delay effect).
	later struct {
		After time.Duration
		Then  command
	}
	// boom panics in Handle; applyBoom emits an event whose Apply panics.
	boom      struct{}
	applyBoom struct{}
)

func (open) isCommand()            {}
func (deposit) isCommand()         {}
func (withdraw) isCommand()        {}
func (holdLater) isCommand()       {}
func (hold) isCommand()            {}
func (depositThenHold) isCommand() {}
func (later) isCommand()           {}
func (boom) isCommand()            {}
func (applyBoom) isCommand()       {}

type event interface{ isEvent() }

type (
	Opened    struct{ Owner string }
	Deposited struct{ Amount int }
	Withdrawn struct{ Amount int }
	Held      struct{}
	Poison    struct{}
)

func (Opened) isEvent()    {}
func (Deposited) isEvent() {}
func (Withdrawn) isEvent() {}
func (Held) isEvent()      {}
func (Poison) isEvent()    {}

var errInsufficient = errors.New("insufficient funds")

type env struct{}

func accountRegistry() *persistence.Registry {
	reg := persistence.NewRegistry()
	must(persistence.Register[Opened](reg, "account.opened"))
	// Version 1 of account.deposited called the amount "amt".
	must(persistence.Register[Deposited](reg, "account.deposited", persistence.WithSchemaVersion(2)))
	must(reg.Upcast("account.deposited", 1, func(data []byte) ([]byte, error) {
		var v1 struct {
			Amt int `json:"amt"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(Deposited{Amount: v1.Amt})
	}))
	must(persistence.Register[Withdrawn](reg, "account.withdrawn"))
	must(persistence.Register[Held](reg, "account.held"))
	must(persistence.Register[Poison](reg, "account.poison"))
	return reg
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func accountDefinition() aggregate.Definition[account, command, event, env] {
	return aggregate.Definition[account, command, event, env]{
		Type:    "account",
		Initial: func(id string) account { return account{ID: id} },
		Handle: func(s account, c command, _ env) (aggregate.Decision[command, event], error) {
			switch c := c.(type) {
			case open:
				if s.Owner != "" {
					return aggregate.Decision[command, event]{}, fmt.Errorf("account %s already open", s.ID)
				}
				return aggregate.Emit[command, event](Opened(c)), nil
			case deposit:
				return aggregate.Emit[command, event](Deposited(c)), nil
			case withdraw:
				if c.Amount > s.Balance {
					return aggregate.Decision[command, event]{}, errInsufficient
				}
				return aggregate.Emit[command, event](Withdrawn(c)), nil
			case holdLater:
				return aggregate.Decision[command, event]{}.Then(composable.Delay(c.After, composable.Send[command](hold{}))), nil
			case hold:
				return aggregate.Emit[command, event](Held{}), nil
			case later:
				return aggregate.Decision[command, event]{}.Then(composable.Delay(c.After, composable.Send(c.Then))), nil
			case depositThenHold:
				return aggregate.Emit[command, event](Deposited(c)).Then(composable.Run(func(_ context.Context, send func(command)) {
					send(hold{})
				})), nil
			case boom:
				panic("handler bug")
			case applyBoom:
				return aggregate.Emit[command, event](Deposited{Amount: 1}, Poison{}), nil
			}
			return aggregate.Decision[command, event]{}, fmt.Errorf("unknown command %T", c)
		},
		Apply: func(s *account, e event) {
			switch e := e.(type) {
			case Opened:
				s.Owner = e.Owner
			case Deposited:
				s.Balance += e.Amount
			case Withdrawn:
				s.Balance -= e.Amount
			case Held:
				s.Holds++
			case Poison:
				panic("apply bug")
			}
		},
		Events:    accountRegistry(),
		Snapshots: persistence.SnapshotCodec[account]{SchemaVersion: 1},
	}
}

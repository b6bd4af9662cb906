package main

// The transfer saga moves the money of one requested transfer across two
// accounts, which no single aggregate can do atomically:
//
//	TransferRequested ──▶ debit the source ──ok──▶ credit the target ──ok──▶ completed
//	                          │ refused or failed        │ refused or failed
//	                          ▼                          ▼
//	                  failed (nothing to undo)   refund the source ──▶ failed
//
// The debit carries its compensation, the refund; when the credit does not
// go through the saga decides to compensate and the framework dispatches
// the refunds of the steps that succeeded, then ends the saga failed with
// the reason. An account's refusal — a business rule, such as insufficient
// funds — is recorded in the saga's state; a failure of the infrastructure
// that outlasted the framework's retries only in the reason. Each instance
// is named after its transfer.

import (
	"errors"
	"fmt"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// The saga's type and step names. The framework sends a step's command
// under the id saga.CommandID(sagaType, transfer, step), and the refund of
// the debit as step saga.CompensationStep(stepDebit).
const (
	sagaType   = "transfer"
	stepDebit  = "debit"
	stepCredit = "credit"
)

// Progress is the state of one transfer saga: what it needs to take the
// next step, rebuilt from its own events.
type Progress struct {
	ID       string
	From, To string
	Amount   Money
	// Refused is the step an account refused, with the account's reason;
	// empty while no step was refused.
	Refused StepRefused
}

// SagaEvent is one of the saga's own events, stored in its instance's
// stream.
type SagaEvent interface{ isSagaEvent() }

type (
	// TransferStarted records what the saga moves, from the request.
	TransferStarted struct {
		From   string `json:"from"`
		To     string `json:"to"`
		Amount Money  `json:"amount"`
	}
	// StepRefused records which step an account refused, and why.
	StepRefused struct {
		Step   string `json:"step"`
		Reason string `json:"reason"`
	}
)

func (TransferStarted) isSagaEvent() {}
func (StepRefused) isSagaEvent()     {}

// debitSource is the first step: take the money from the source. Its
// compensation gives it back.
func debitSource(p Progress) saga.Command {
	return saga.Command{
		Step: stepDebit, Aggregate: accountType, ID: p.From, Command: Debit{Transfer: p.ID, Amount: p.Amount},
		Compensation: &saga.Command{Aggregate: accountType, ID: p.From, Command: Refund{Transfer: p.ID, Amount: p.Amount}},
	}
}

// creditTarget is the last step: pay the target. It needs no compensation:
// once it succeeded, nothing can fail any more.
func creditTarget(p Progress) saga.Command {
	return saga.Command{Step: stepCredit, Aggregate: accountType, ID: p.To, Command: Credit{Transfer: p.ID, Amount: p.Amount}}
}

// steps returns the saga's steps in order, for printing what happened.
func steps(p Progress) []saga.Command { return []saga.Command{debitSource(p), creditTarget(p)} }

type sagaDecision = saga.Decision[SagaEvent]

// routeTransfer starts one instance per requested transfer; nothing else
// on the saga's topic concerns it.
func routeTransfer(event any, _ map[string]string) saga.Route {
	if e, ok := event.(TransferRequested); ok {
		return saga.Route{Mode: saga.Start, ID: e.Transfer}
	}
	return saga.Route{}
}

// handleSaga reacts to the request that started the instance and to the
// outcomes of its steps. It is pure: what it knows comes from its state.
func handleSaga(p Progress, in saga.Input, _ struct{}) (sagaDecision, error) {
	if e, ok := in.Event.(TransferRequested); ok {
		started := TransferStarted{From: e.From, To: e.To, Amount: e.Amount}
		applySaga(&p, started)
		return sagaDecision{Events: []SagaEvent{started}, Dispatch: []saga.Command{debitSource(p)}}, nil
	}
	r := in.Result
	if r == nil {
		return sagaDecision{}, nil
	}
	if r.Err != nil {
		// A refusal's text is the account's own reason; any other failure
		// keeps the runtime's full text.
		var d sagaDecision
		reason := fmt.Sprintf("%s failed: %v", r.Step, r.Err)
		if errors.Is(r.Err, aggregate.ErrRejected) {
			refused := StepRefused{Step: r.Step, Reason: r.Err.Error()}
			d.Events = []SagaEvent{refused}
			reason = fmt.Sprintf("%s refused: %s", r.Step, refused.Reason)
		}
		if r.Step == stepDebit {
			d.Fail = reason // nothing moved yet
		} else {
			d.Compensate = reason
		}
		return d, nil
	}
	switch r.Step {
	case stepDebit:
		return sagaDecision{Dispatch: []saga.Command{creditTarget(p)}}, nil
	case stepCredit:
		return sagaDecision{Complete: true}, nil
	}
	return sagaDecision{}, fmt.Errorf("result of unknown step %q", r.Step)
}

// applySaga records one of the saga's events in its state.
func applySaga(p *Progress, event SagaEvent) {
	switch e := event.(type) {
	case TransferStarted:
		p.From, p.To, p.Amount = e.From, e.To, e.Amount
	case StepRefused:
		p.Refused = e
	}
}

// newTransferSaga returns the saga. Its Events registry decodes the
// transfer events it reads from the bus and encodes its own; its Commands
// registry encodes the account commands it dispatches, so that pending
// ones survive a restart.
func newTransferSaga() (saga.Definition[Progress, SagaEvent, struct{}], error) {
	events, commands := persistence.NewRegistry(), persistence.NewRegistry()
	err := errors.Join(
		registerTransferEvents(events),
		persistence.Register[TransferStarted](events, "transfer-saga.started"),
		persistence.Register[StepRefused](events, "transfer-saga.step-refused"),
		persistence.Register[Debit](commands, "account.debit"),
		persistence.Register[Credit](commands, "account.credit"),
		persistence.Register[Refund](commands, "account.refund"),
	)
	if err != nil {
		return saga.Definition[Progress, SagaEvent, struct{}]{}, fmt.Errorf("register transfer saga types: %w", err)
	}
	return saga.Definition[Progress, SagaEvent, struct{}]{
		Type:     sagaType,
		Topics:   []string{"events." + transferType},
		Events:   events,
		Commands: commands,
		Route:    routeTransfer,
		Initial:  func(id string) Progress { return Progress{ID: id} },
		Handle:   handleSaga,
		Apply:    applySaga,
	}, nil
}

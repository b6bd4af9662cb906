package main

import (
	"errors"
	"testing"

	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// The saga's inputs and outputs for a transfer t1 of 30.00 from alice to
// bob. The harness asserts them exhaustively: a saga event, dispatched
// command or timer a step does not assert fails the test.
var (
	requestT1   = TransferRequested{Transfer: "t1", From: "alice", To: "bob", Amount: 30_00}
	startedT1   = TransferStarted{From: "alice", To: "bob", Amount: 30_00}
	debitAlice  = saga.Dispatched{Step: stepDebit, Aggregate: accountType, ID: "alice", Command: Debit{Transfer: "t1", Amount: 30_00}}
	creditBob   = saga.Dispatched{Step: stepCredit, Aggregate: accountType, ID: "bob", Command: Credit{Transfer: "t1", Amount: 30_00}}
	refundAlice = saga.Dispatched{Step: compensationStep(stepDebit), Aggregate: accountType, ID: "alice", Command: Refund{Transfer: "t1", Amount: 30_00}}

	// What the runtime's rejections read like when they reach the saga:
	// only their text survives.
	errClosed       = errors.New("aggregate account/bob: rejected: account is closed")
	errInsufficient = errors.New("aggregate account/alice: rejected: insufficient funds: balance 10.00, need 30.00")
)

func transferSaga(t *testing.T) saga.Definition[Progress, SagaEvent, struct{}] {
	t.Helper()
	def, err := newTransferSaga()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func TestSagaSucceeds(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1")
	st.When(requestT1).ThenEvents(startedT1).ThenDispatches(debitAlice).ThenStatus(saga.Running, "")
	st.Reply(stepDebit, nil).ThenDispatches(creditBob).ThenStatus(saga.Running, "")
	st.Reply(stepCredit, nil).ThenDispatches().ThenStatus(saga.Completed, "")
	st.Reply(stepCredit, nil).ThenIgnored() // a duplicate outcome
}

func TestSagaRefundsWhenTheCreditIsRefused(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
	st.Reply(stepDebit, nil).ThenDispatches(creditBob)
	st.Reply(stepCredit, errClosed).
		ThenEvents(StepRefused{Step: stepCredit, Reason: errClosed.Error()}).
		ThenDispatches(refundAlice).
		ThenStatus(saga.Compensating, "credit refused: "+errClosed.Error())
	st.Reply(compensationStep(stepDebit), nil).ThenDispatches().ThenStatus(saga.Failed, "credit refused: "+errClosed.Error())
	if p := st.Instance().State; p.Refused.Step != stepCredit {
		t.Errorf("state %+v, want the credit recorded as refused", p)
	}
}

func TestSagaFailsAtOnceWhenTheDebitIsRefused(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
	st.Reply(stepDebit, errInsufficient).
		ThenEvents(StepRefused{Step: stepDebit, Reason: errInsufficient.Error()}).
		ThenDispatches(). // nothing moved: nothing to compensate
		ThenStatus(saga.Failed, "debit refused: "+errInsufficient.Error())
}

// TestSagaFailsVisiblyWhenTheRefundFails covers the path no one wants: the
// source was closed between the debit and the refund. The saga ends
// failed with both reasons, for a human to sort out.
func TestSagaFailsVisiblyWhenTheRefundFails(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
	st.Reply(stepDebit, nil).ThenDispatches(creditBob)
	st.Reply(stepCredit, errClosed).ThenEvents(StepRefused{Step: stepCredit, Reason: errClosed.Error()}).ThenDispatches(refundAlice)
	st.Reply(compensationStep(stepDebit), errors.New("aggregate account/alice: rejected: account is closed")).
		ThenStatus(saga.Failed, "then compensate:debit failed: aggregate account/alice: rejected: account is closed")
}

func TestSagaRouting(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1")
	st.When(TransferRequested{Transfer: "t2", From: "alice", To: "bob", Amount: 1}).ThenIgnored() // another instance
	st.When(Debited{Transfer: "t1", Amount: 1}).ThenIgnored()                                     // not the saga's business
	st.When(requestT1).ThenEvents(startedT1).ThenDispatches(debitAlice)
	st.When(requestT1).ThenIgnored() // strict start: a second request does not restart it
}

package main

import (
	"fmt"
	"testing"

	"github.com/composable-go/composable/aggregate"
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
	refundAlice = saga.Dispatched{Step: saga.CompensationStep(stepDebit), Aggregate: accountType, ID: "alice", Command: Refund{Transfer: "t1", Amount: 30_00}}

	// The accounts' rejections, as the runtime returns them. The saga sees
	// the handler's message, matching aggregate.ErrRejected.
	errClosed       = &aggregate.RejectedError{Type: accountType, ID: "bob", Err: ErrClosed}
	errInsufficient = &aggregate.RejectedError{Type: accountType, ID: "alice", Err: fmt.Errorf("%w: balance 10.00, need 30.00", ErrInsufficientFunds)}
	// A failure that is not a refusal: the store stayed down through the
	// framework's retries.
	errDown = fmt.Errorf("aggregate account/alice: %w: connection refused", aggregate.ErrUnavailable)
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
		ThenEvents(StepRefused{Step: stepCredit, Reason: "account is closed"}).
		ThenDispatches(refundAlice).
		ThenStatus(saga.Compensating, "credit refused: account is closed")
	st.Reply(refundAlice.Step, nil).ThenDispatches().ThenStatus(saga.Failed, "credit refused: account is closed")
	if p := st.Instance().State; p.Refused.Step != stepCredit {
		t.Errorf("state %+v, want the credit recorded as refused", p)
	}
}

func TestSagaFailsAtOnceWhenTheDebitIsRefused(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
	st.Reply(stepDebit, errInsufficient).
		ThenEvents(StepRefused{Step: stepDebit, Reason: "insufficient funds: balance 10.00, need 30.00"}).
		ThenDispatches(). // nothing moved: nothing to compensate
		ThenStatus(saga.Failed, "debit refused: insufficient funds: balance 10.00, need 30.00")
}

// TestSagaTellsAFailureFromARefusal: a step that fails for want of the
// infrastructure is not recorded as refused, and its reason keeps the
// runtime's whole text.
func TestSagaTellsAFailureFromARefusal(t *testing.T) {
	t.Run("debit", func(t *testing.T) {
		st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
		st.Reply(stepDebit, errDown).ThenDispatches().ThenStatus(saga.Failed, "debit failed: "+errDown.Error())
	})
	t.Run("credit", func(t *testing.T) {
		st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
		st.Reply(stepDebit, nil).ThenDispatches(creditBob)
		st.Reply(stepCredit, errDown).ThenDispatches(refundAlice).ThenStatus(saga.Compensating, "credit failed: "+errDown.Error())
		st.Reply(refundAlice.Step, nil).ThenStatus(saga.Failed, "credit failed: "+errDown.Error())
		if p := st.Instance().State; p.Refused != (StepRefused{}) {
			t.Errorf("state %+v, want no step recorded as refused", p)
		}
	})
}

// TestSagaFailsVisiblyWhenTheRefundFails covers the path no one wants: the
// source was closed between the debit and the refund. The saga ends
// failed with both reasons, for a human to sort out.
func TestSagaFailsVisiblyWhenTheRefundFails(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1", requestT1)
	st.Reply(stepDebit, nil).ThenDispatches(creditBob)
	st.Reply(stepCredit, errClosed).ThenEvents(StepRefused{Step: stepCredit, Reason: "account is closed"}).ThenDispatches(refundAlice)
	st.Reply(refundAlice.Step, &aggregate.RejectedError{Type: accountType, ID: "alice", Err: ErrClosed}).
		ThenStatus(saga.Failed, "credit refused: account is closed; then compensate:debit failed: account is closed")
}

func TestSagaRouting(t *testing.T) {
	st := testkit.GivenSaga(t, transferSaga(t), "t1")
	st.When(TransferRequested{Transfer: "t2", From: "alice", To: "bob", Amount: 1}).ThenIgnored() // another instance
	st.When(Debited{Transfer: "t1", Amount: 1}).ThenIgnored()                                     // not the saga's business
	st.When(requestT1).ThenEvents(startedT1).ThenDispatches(debitAlice)
	st.When(requestT1).ThenIgnored() // strict start: a second request does not restart it
}

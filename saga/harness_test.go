package saga_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

var (
	debitAlice  = saga.Dispatched{Step: "debit", Aggregate: "wallet", ID: "alice", Command: Debit{Amount: 30}}
	creditBob   = saga.Dispatched{Step: "credit", Aggregate: "wallet", ID: "bob", Command: Credit{Amount: 30}}
	refundAlice = saga.Dispatched{Step: "compensate:debit", Aggregate: "wallet", ID: "alice", Command: Credit{Amount: 30}}
	requested   = TransferRequested{Transfer: "t", From: "alice", To: "bob", Amount: 30}
	started     = Started{From: "alice", To: "bob", Amount: 30}
)

func TestHarnessHappyPath(t *testing.T) {
	st := testkit.GivenSaga(t, transferDefinition(), "t")
	st.When(requested).ThenEvents(started).ThenDispatches(debitAlice).ThenSchedules("deadline")
	st.Reply("debit", nil).ThenStatus(saga.Running, "")
	st.When(TransferApproved{Transfer: "t"}).ThenEvents(Approved{}).ThenDispatches(creditBob)
	st.Reply("credit", nil).ThenCancels("deadline").ThenStatus(saga.Completed, "")
	st.Advance(time.Hour).ThenIgnored() // the cancelled deadline never fires
}

func TestHarnessCompensationAndTimeout(t *testing.T) {
	t.Run("credit fails", func(t *testing.T) {
		st := testkit.GivenSaga(t, transferDefinition(), "t", requested)
		st.Reply("debit", nil)
		st.When(TransferApproved{Transfer: "t"}).ThenEvents(Approved{}).ThenDispatches(creditBob)
		st.Reply("credit", errors.New("account closed")).ThenDispatches(refundAlice).ThenStatus(saga.Compensating, "account closed")
		st.Reply("compensate:debit", nil).ThenCancels().ThenStatus(saga.Failed, "credit failed: account closed")
		st.Reply("compensate:debit", nil).ThenIgnored() // a duplicate outcome
	})
	t.Run("deadline", func(t *testing.T) {
		st := testkit.GivenSaga(t, transferDefinition(), "t", requested)
		st.Reply("debit", nil)
		st.Advance(59 * time.Second).ThenIgnored()
		st.Advance(time.Second).ThenDispatches(refundAlice).ThenStatus(saga.Compensating, "deadline")
		st.When(TransferApproved{Transfer: "t"}).ThenIgnored() // too late
		st.Reply("compensate:debit", nil).ThenStatus(saga.Failed, "approval deadline missed")
	})
	t.Run("compensation fails", func(t *testing.T) {
		st := testkit.GivenSaga(t, transferDefinition(), "t", requested)
		st.Reply("debit", nil)
		st.Advance(time.Minute).ThenDispatches(refundAlice)
		st.Reply("compensate:debit", errors.New("wallet frozen")).ThenStatus(saga.Failed, "compensate:debit failed: wallet frozen")
	})
}

// recorder is a testkit.TB that records failures.
type recorder struct {
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recorder) Cleanup(f func())             { r.cleanups = append(r.cleanups, f) }
func (r *recorder) finish() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return r.errs
}

func TestHarnessIsExhaustive(t *testing.T) {
	tests := []struct {
		name string
		run  func(st *testkit.SagaTest[transfer, any, struct{}])
		want string
	}{
		{"unasserted dispatch", func(st *testkit.SagaTest[transfer, any, struct{}]) {
			st.When(requested).ThenEvents(started).ThenSchedules("deadline")
		}, "dispatched commands were not asserted"},
		{"unasserted timer", func(st *testkit.SagaTest[transfer, any, struct{}]) {
			st.When(requested).ThenEvents(started).ThenDispatches(debitAlice)
		}, "armed timers were not asserted"},
		{"wrong command", func(st *testkit.SagaTest[transfer, any, struct{}]) {
			st.When(requested).ThenEvents(started).ThenDispatches(creditBob).ThenSchedules("deadline")
		}, "dispatched commands differ"},
		{"not ignored", func(st *testkit.SagaTest[transfer, any, struct{}]) {
			st.When(requested).ThenIgnored().ThenEvents(started).ThenDispatches(debitAlice).ThenSchedules("deadline")
		}, "want it ignored"},
		{"wrong status", func(st *testkit.SagaTest[transfer, any, struct{}]) {
			st.When(requested).ThenEvents(started).ThenDispatches(debitAlice).ThenSchedules("deadline").ThenStatus(saga.Completed, "")
		}, "status running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			tt.run(testkit.GivenSaga(rec, transferDefinition(), "t"))
			errs := rec.finish()
			if len(errs) != 1 || !strings.Contains(errs[0], tt.want) {
				t.Fatalf("failures %q, want one containing %q", errs, tt.want)
			}
		})
	}
}

// TestHarnessParkAndResume: a step parked by its policy defers a timer
// firing; Resume handles it and dispatches the step again.
func TestHarnessParkAndResume(t *testing.T) {
	parkOnFailure := requested
	parkOnFailure.Policy = saga.Park
	st := testkit.GivenSaga(t, transferDefinition(), "t", parkOnFailure)
	st.Reply("debit", errors.New("wallet unavailable")).ThenStatus(saga.Parked, "")
	if p := st.Instance().Parked; p == nil || p.Step != "debit" || p.Reason != "step debit failed: wallet unavailable" {
		t.Fatalf("parked %+v", p)
	}
	st.Advance(time.Minute) // the deadline fires while parked: deferred
	if p := st.Instance().Parked; p == nil || p.Deferred() != 1 {
		t.Fatalf("parked %+v, want the deadline deferred", p)
	}
	// Resumed: the deadline compensates, once the debit — dispatched
	// again — has its outcome; a debit that succeeds late is refunded.
	st.Resume().ThenDispatches(debitAlice).ThenStatus(saga.Compensating, "approval deadline missed")
	st.Reply("debit", nil).ThenDispatches(refundAlice)
	st.Reply("compensate:debit", nil).ThenStatus(saga.Failed, "approval deadline missed")
}

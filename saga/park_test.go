package saga_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// Supervision: a failure that remains after its retries — of a step, or
// of the saga's own code — parks the instance or compensates it, as
// declared; a parked instance is listed, defers its inputs and dispatches
// nothing, and Resume takes it on from where it stopped.

func (f *fixture) wallet(t *testing.T, id string, cmd walletCmd) {
	t.Helper()
	if _, err := f.wallets.Send(ctxT(t), id, cmd); err != nil {
		t.Fatal(err)
	}
}

// waitParked waits (with Wait, which returns on parking) until id is
// parked.
func (f *fixture) waitParked(t *testing.T, id string) saga.Instance[transfer] {
	t.Helper()
	inst, err := f.transfers.Wait(ctxT(t), id)
	if err != nil || inst.Status != saga.Parked || inst.Parked == nil {
		t.Fatalf("Wait(%s) = %+v, %v; want it parked", id, inst, err)
	}
	return inst
}

func (f *fixture) parked(t *testing.T) []string {
	t.Helper()
	ids, err := f.transfers.Parked(ctxT(t), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// timerNames lists the durable timers of the transfer saga's instance id.
func timerNames(t *testing.T, store persistence.EventStore, id string) []string {
	t.Helper()
	all, err := store.(persistence.TimerStore).Timers(ctxT(t), "saga-transfer", persistence.Timer{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tm := range all {
		if tm.ID == id {
			out = append(out, tm.Name)
		}
	}
	slices.Sort(out)
	return out
}

// TestStepFailureParksUntilResumed: the debit fails (alice's wallet is
// closed) under the Park policy. The instance parks with the reason and
// the step, is listed, keeps its deadline but no guard, and defers the
// notes delivered meanwhile — concurrently with its resumption, too: each
// note is handled once. Once alice's wallet is reopened, Resume dispatches
// the debit again and the transfer goes on. On memory and PostgreSQL.
func TestStepFailureParksUntilResumed(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixtureWith(t, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{})
			f.wallet(t, "alice", Close{})
			f.deliver(t, TransferRequested{Transfer: "p1", From: "alice", To: "bob", Amount: 10, Policy: saga.Park})
			inst := f.waitParked(t, "p1")
			if p := inst.Parked; p.Step != "debit" || p.From != saga.Running || !strings.Contains(p.Reason, "account closed") ||
				len(inst.Pending) != 1 || inst.Pending["debit"].Step != "debit" {
				t.Fatalf("parked %+v, pending %v", p, inst.Pending)
			}
			if ids := f.parked(t); !slices.Equal(ids, []string{"p1"}) {
				t.Fatalf("Parked = %v", ids)
			}
			if got, want := timerNames(t, store, "p1"), []string{"parked", "timer:deadline"}; !slices.Equal(got, want) {
				t.Fatalf("timers of a parked instance %v, want %v (no guard)", got, want)
			}
			// Past the guard's time nothing is dispatched again.
			f.clock.Advance(45 * time.Second)
			f.deliver(t, TransferNoted{Transfer: "p1", Note: "before"})
			inst = f.waitFor(t, "p1", func(i saga.Instance[transfer]) bool { return i.Parked != nil && i.Parked.Deferred() == 1 })
			if len(inst.State.Notes) != 0 || countTypes(t, store, "wallet/alice")["wallet.debited"] != 0 {
				t.Fatalf("a parked instance handled a note (%v) or debited", inst.State.Notes)
			}

			f.wallet(t, "alice", Reopen{})
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					if _, err := f.tryDeliver(ctxT(t), TransferNoted{Transfer: "p1", Note: fmt.Sprint(i)}); err != nil {
						t.Error(err)
					}
				})
			}
			if err := f.transfers.Resume(ctxT(t), "p1"); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			inst = f.waitFor(t, "p1", func(i saga.Instance[transfer]) bool { return len(i.Pending) == 0 })
			if inst.Status != saga.Running || inst.Parked != nil || len(inst.State.Notes) != 21 || inst.State.Notes[0] != "before" {
				t.Fatalf("resumed %+v", inst)
			}
			counted := map[string]int{}
			for _, n := range inst.State.Notes {
				counted[n]++
			}
			for n, c := range counted {
				if c != 1 {
					t.Fatalf("note %q handled %d times", n, c)
				}
			}
			if ids := f.parked(t); len(ids) != 0 {
				t.Fatalf("Parked after Resume = %v", ids)
			}
			if a := f.balance(t, "alice"); a != 90 {
				t.Fatalf("alice %d: the debit was not dispatched again", a)
			}
			if got, want := timerNames(t, store, "p1"), []string{"timer:deadline"}; !slices.Equal(got, want) {
				t.Fatalf("timers after Resume %v, want %v", got, want)
			}
			if err := f.transfers.Resume(ctxT(t), "p1"); !errors.Is(err, saga.ErrNotParked) || !errors.Is(err, aggregate.ErrRejected) {
				t.Fatalf("Resume of a running instance: %v, want ErrNotParked", err)
			}
			f.deliver(t, TransferApproved{Transfer: "p1"})
			if inst := f.waitFor(t, "p1", saga.Instance[transfer].Ended); inst.Status != saga.Completed || f.balance(t, "bob") != 110 {
				t.Fatalf("after approval %+v, bob %d", inst, f.balance(t, "bob"))
			}
		})
	}
}

// fixable returns the transfer saga with policy for its own failures,
// whose Handle panics on Explode while bug is set — until the fix is
// "deployed".
func fixable(policy saga.ErrorPolicy, bug *atomic.Bool) saga.Definition[transfer, any, struct{}] {
	def := transferDefinition()
	def.OnError = policy
	handle := def.Handle
	def.Handle = func(s transfer, in saga.Input, env struct{}) (saga.Decision[any], error) {
		if e, ok := in.Event.(Explode); ok {
			if bug.Load() {
				panic("saga bug")
			}
			return saga.Decision[any]{Events: []any{Noted{Note: "exploded " + e.Transfer}}}, nil
		}
		return handle(s, in, env)
	}
	return def
}

// TestHandlePanicParksUntilFixed: under ParkOnError a panic in Handle parks
// the instance with the input that failed; an outcome that comes
// meanwhile waits too. Resumed once the bug is fixed, the input is handled
// again — by the fixed code — and the saga goes on where it was.
func TestHandlePanicParksUntilFixed(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var bug atomic.Bool
			bug.Store(true)
			f := newFixtureDef(t, store, testkit.NewManualClock(time.Unix(0, 0)), fixable(saga.ParkOnError, &bug), saga.Options{})
			f.deliver(t, TransferRequested{Transfer: "x1", From: "alice", To: "bob", Amount: 10})
			f.waitFor(t, "x1", debited)
			f.deliver(t, Explode{Transfer: "x1"})
			inst := f.waitParked(t, "x1")
			if p := inst.Parked; p.Step != "" || p.From != saga.Running || !strings.HasPrefix(p.Reason, "unexpected: panic in Handle: saga bug") || p.Deferred() != 1 {
				t.Fatalf("parked %+v (%d deferred)", p, p.Deferred())
			}
			// Parked, it handles nothing: an approval waits.
			f.deliver(t, TransferApproved{Transfer: "x1"})
			if inst := f.waitFor(t, "x1", func(i saga.Instance[transfer]) bool { return i.Parked.Deferred() == 2 }); inst.State.Approved {
				t.Fatal("a parked instance handled an approval")
			}
			// Resumed with the bug still there: parked again, nothing lost.
			if err := f.transfers.Resume(ctxT(t), "x1"); err != nil {
				t.Fatal(err)
			}
			if inst := f.waitParked(t, "x1"); inst.Parked.Deferred() != 2 || inst.State.Approved {
				t.Fatalf("resumed with the bug: %+v, %d deferred", inst, inst.Parked.Deferred())
			}
			bug.Store(false)
			if err := f.transfers.Resume(ctxT(t), "x1"); err != nil {
				t.Fatal(err)
			}
			inst = f.waitFor(t, "x1", saga.Instance[transfer].Ended)
			if inst.Status != saga.Completed || !slices.Equal(inst.State.Notes, []string{"exploded x1"}) || f.balance(t, "bob") != 110 {
				t.Fatalf("after the fix: %+v, bob %d", inst, f.balance(t, "bob"))
			}
		})
	}
}

// TestHandlePanicOnStartParks: a start event whose handling panics parks
// an instance that never started; resumed, the start is handled again.
func TestHandlePanicOnStartParks(t *testing.T) {
	var bug atomic.Bool
	bug.Store(true)
	def := fixable(saga.ParkOnError, &bug)
	handle := def.Handle
	def.Handle = func(s transfer, in saga.Input, env struct{}) (saga.Decision[any], error) {
		if _, ok := in.Event.(TransferRequested); ok && bug.Load() {
			return saga.Decision[any]{}, errors.New("cannot start")
		}
		return handle(s, in, env)
	}
	f := newFixtureDef(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)), def, saga.Options{})
	f.deliver(t, TransferRequested{Transfer: "s1", From: "alice", To: "bob", Amount: 10})
	if inst := f.waitParked(t, "s1"); inst.Parked.From != saga.NotStarted || inst.Parked.Reason != "unexpected: cannot start" {
		t.Fatalf("parked %+v", inst.Parked)
	}
	bug.Store(false)
	if err := f.transfers.Resume(ctxT(t), "s1"); err != nil {
		t.Fatal(err)
	}
	if inst := f.waitFor(t, "s1", debited); inst.State.From != "alice" || f.balance(t, "alice") != 90 {
		t.Fatalf("resumed start: %+v", inst)
	}
}

// TestCompensateOnFailure: the Compensate step policy and the
// CompensateOnError definition policy both refund the debit and fail.
func TestCompensateOnFailure(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "c1", From: "alice", To: "bob", Amount: 10, FailCredit: true, Policy: saga.Compensate})
	f.waitFor(t, "c1", debited)
	f.deliver(t, TransferApproved{Transfer: "c1"})
	inst := f.waitFor(t, "c1", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || !strings.HasPrefix(inst.Reason, "step credit failed: ") || f.balance(t, "alice") != 100 {
		t.Fatalf("Compensate policy: %+v, alice %d", inst, f.balance(t, "alice"))
	}

	var bug atomic.Bool
	bug.Store(true)
	g := newFixtureDef(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)), fixable(saga.CompensateOnError, &bug), saga.Options{})
	g.deliver(t, TransferRequested{Transfer: "c2", From: "alice", To: "bob", Amount: 10})
	g.waitFor(t, "c2", debited)
	g.deliver(t, Explode{Transfer: "c2"})
	inst = g.waitFor(t, "c2", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || !strings.HasPrefix(inst.Reason, "unexpected: panic in Handle") || g.balance(t, "alice") != 100 {
		t.Fatalf("CompensateOnError: %+v, alice %d", inst, g.balance(t, "alice"))
	}
}

// TestFailedCompensationParks: the refund fails (alice closed her wallet)
// under the Park policy: the compensating instance parks rather than fail
// with money missing; reopened and resumed, the refund goes through and
// the saga fails as it was compensating to.
func TestFailedCompensationParks(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "r1", From: "alice", To: "bob", Amount: 10, FailCredit: true, RefundPolicy: saga.Park})
	f.waitFor(t, "r1", debited)
	f.wallet(t, "alice", Close{})
	f.deliver(t, TransferApproved{Transfer: "r1"})
	inst := f.waitParked(t, "r1")
	if p := inst.Parked; p.From != saga.Compensating || p.Step != saga.CompensationStep("debit") || !strings.Contains(p.Reason, "account closed") {
		t.Fatalf("parked %+v", p)
	}
	f.wallet(t, "alice", Reopen{})
	if err := f.transfers.Resume(ctxT(t), "r1"); err != nil {
		t.Fatal(err)
	}
	inst = f.waitFor(t, "r1", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || !strings.HasPrefix(inst.Reason, "credit failed: ") || f.balance(t, "alice") != 100 {
		t.Fatalf("resumed compensation: %+v, alice %d", inst, f.balance(t, "alice"))
	}
}

// TestParkedInstanceSurvivesRestart: parked, with a timer that fired while
// parked, then the runtime closes; a new runtime lists it and resumes it.
// The deferred deadline is handled: the transfer is compensated. Snapshots
// are taken at every event, so the new runtime reads the parking from
// one.
func TestParkedInstanceSurvivesRestart(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			clock := testkit.NewManualClock(time.Unix(0, 0))
			opts := saga.Options{SnapshotEvery: 1}
			f := newFixtureWith(t, store, clock, opts)
			f.deliver(t, TransferRequested{Transfer: "k1", From: "alice", To: "bob", Amount: 10, FailCredit: true, Policy: saga.Park})
			f.waitFor(t, "k1", debited)
			f.deliver(t, TransferApproved{Transfer: "k1"})
			f.waitParked(t, "k1")
			clock.Advance(time.Minute) // the deadline fires, and waits
			f.waitFor(t, "k1", func(i saga.Instance[transfer]) bool { return i.Parked.Deferred() == 1 })
			if got := timerNames(t, store, "k1"); !slices.Equal(got, []string{"parked"}) {
				t.Fatalf("timers %v, want the mark alone: the deadline fired", got)
			}
			_ = f.rt.Close()

			g := newFixtureWith(t, store, clock, opts)
			if ids := g.parked(t); !slices.Equal(ids, []string{"k1"}) {
				t.Fatalf("Parked after a restart = %v", ids)
			}
			if inst := g.waitParked(t, "k1"); inst.Parked.Deferred() != 1 || inst.Parked.Step != "credit" {
				t.Fatalf("after a restart: %+v", inst.Parked)
			}
			if err := g.transfers.Resume(ctxT(t), "k1"); err != nil {
				t.Fatal(err)
			}
			// The deadline compensates; the credit, dispatched again, fails
			// again (it always does): nothing of it to undo.
			inst := g.waitFor(t, "k1", saga.Instance[transfer].Ended)
			if inst.Status != saga.Failed || inst.Reason != "approval deadline missed" || g.balance(t, "alice") != 100 {
				t.Fatalf("resumed after a restart: %+v, alice %d", inst, g.balance(t, "alice"))
			}
		})
	}
}

// TestHandleDecidesToPark: Decision.Park parks after recording the rest
// of the decision.
func TestHandleDecidesToPark(t *testing.T) {
	def := transferDefinition()
	handle := def.Handle
	def.Handle = func(s transfer, in saga.Input, env struct{}) (saga.Decision[any], error) {
		if e, ok := in.Event.(TransferNoted); ok && e.Note == "stop" {
			return saga.Decision[any]{Events: []any{Noted{Note: e.Note}}, Park: "asked to stop"}, nil
		}
		return handle(s, in, env)
	}
	f := newFixtureDef(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)), def, saga.Options{})
	f.deliver(t, TransferRequested{Transfer: "d1", From: "alice", To: "bob", Amount: 10})
	f.waitFor(t, "d1", debited)
	f.deliver(t, TransferNoted{Transfer: "d1", Note: "stop"})
	inst := f.waitParked(t, "d1")
	if inst.Parked.Reason != "asked to stop" || inst.Parked.Deferred() != 0 || !slices.Equal(inst.State.Notes, []string{"stop"}) {
		t.Fatalf("parked %+v, notes %v", inst.Parked, inst.State.Notes)
	}
	if err := f.transfers.Resume(ctxT(t), "d1"); err != nil {
		t.Fatal(err)
	}
	if inst := f.waitFor(t, "d1", func(i saga.Instance[transfer]) bool { return i.Status == saga.Running }); inst.Parked != nil {
		t.Fatalf("resumed %+v", inst)
	}
}

// TestEventRoutedToAnInvalidIDIsPermanent: an event routed to an id no
// instance can have is refused as permanent — the bus dead-letters it
// rather than retry — and the saga goes on with the next one.
func TestEventRoutedToAnInvalidIDIsPermanent(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	_, err := f.tryDeliver(ctxT(t), TransferRequested{Transfer: "bad\x00id", From: "alice", To: "bob", Amount: 10})
	if !errors.Is(err, aggregate.ErrInvalidID) || !errors.Is(err, bus.ErrPermanent) {
		t.Fatalf("Deliver to an invalid id: %v, want a permanent ErrInvalidID", err)
	}
	f.deliver(t, TransferRequested{Transfer: "good", From: "alice", To: "bob", Amount: 10})
	f.waitFor(t, "good", debited)
}

// TestTimerFiringThatFailsParksAndFiresOnResume: under ParkOnError the
// deadline's handling panics; the firing waits with the parked instance
// (its row is gone) and, resumed once fixed, compensates the transfer.
func TestTimerFiringThatFailsParksAndFiresOnResume(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var bug atomic.Bool
			bug.Store(true)
			def := transferDefinition()
			def.OnError = saga.ParkOnError
			handle := def.Handle
			def.Handle = func(s transfer, in saga.Input, env struct{}) (saga.Decision[any], error) {
				if in.Timer == "deadline" && bug.Load() {
					panic("deadline bug")
				}
				return handle(s, in, env)
			}
			f := newFixtureDef(t, store, testkit.NewManualClock(time.Unix(0, 0)), def, saga.Options{})
			f.deliver(t, TransferRequested{Transfer: "d1", From: "alice", To: "bob", Amount: 10})
			f.waitFor(t, "d1", debited)
			f.clock.Advance(time.Minute)
			inst := f.waitParked(t, "d1")
			if inst.Parked.Deferred() != 1 || len(inst.Timers) != 0 {
				t.Fatalf("parked %+v, timers %v", inst.Parked, inst.Timers)
			}
			if got := timerNames(t, store, "d1"); !slices.Equal(got, []string{"parked"}) {
				t.Fatalf("timers %v, want the mark alone", got)
			}
			bug.Store(false)
			if err := f.transfers.Resume(ctxT(t), "d1"); err != nil {
				t.Fatal(err)
			}
			inst = f.waitFor(t, "d1", saga.Instance[transfer].Ended)
			if inst.Status != saga.Failed || inst.Reason != "approval deadline missed" || f.balance(t, "alice") != 100 {
				t.Fatalf("resumed: %+v, alice %d", inst, f.balance(t, "alice"))
			}
		})
	}
}

// TestParkedInstanceEvicted: under MaxLive 1 a parked instance is evicted
// by the next one; a note for it reactivates it and is deferred; resumed,
// it dispatches its debit again. Nothing of the parking is lost with the
// eviction.
func TestParkedInstanceEvicted(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixtureWith(t, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{MaxLive: 1})
			f.wallet(t, "alice", Close{})
			f.deliver(t, TransferRequested{Transfer: "e1", From: "alice", To: "bob", Amount: 10, Policy: saga.Park})
			f.waitParked(t, "e1")
			f.deliver(t, TransferRequested{Transfer: "e2", From: "carol", To: "bob", Amount: 10}) // evicts e1
			f.waitFor(t, "e2", debited)
			f.deliver(t, TransferNoted{Transfer: "e1", Note: "while evicted"})
			if inst := f.waitParked(t, "e1"); inst.Parked.Deferred() != 1 || inst.Parked.Step != "debit" {
				t.Fatalf("after eviction: %+v", inst.Parked)
			}
			f.wallet(t, "alice", Reopen{})
			if err := f.transfers.Resume(ctxT(t), "e1"); err != nil {
				t.Fatal(err)
			}
			inst := f.waitFor(t, "e1", func(i saga.Instance[transfer]) bool { return i.Status == saga.Running && len(i.Pending) == 0 })
			if !slices.Equal(inst.State.Notes, []string{"while evicted"}) || f.balance(t, "alice") != 90 {
				t.Fatalf("resumed after eviction: %+v, alice %d", inst, f.balance(t, "alice"))
			}
		})
	}
}

package saga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/bus"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) {
	// protoactor's dead-letter log throttle runs a goroutine for a second
	// after a dead letter (a reply to an actor that stopped), whatever the
	// system's state: bounded, and not ours to stop.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	store     *memory.Store
	clock     *testkit.ManualClock
	rt        *aggregate.Runtime
	wallets   *aggregate.Type[wallet, walletCmd, walletEvent, struct{}]
	transfers *saga.Saga[transfer, any, struct{}]
	n         atomic.Int64
}

func newFixture(t *testing.T, store *memory.Store, clock *testkit.ManualClock) *fixture {
	t.Helper()
	return newFixtureWith(t, store, clock, saga.Options{})
}

// newFixtureWith starts a runtime over store, with the wallets and the
// transfer saga hosted with opts.
func newFixtureWith(t testing.TB, store persistence.EventStore, clock *testkit.ManualClock, opts saga.Options, rtOpts ...aggregate.RuntimeOption) *fixture {
	t.Helper()
	return newFixtureDef(t, store, clock, transferDefinition(), opts, rtOpts...)
}

// newFixtureDef is newFixtureWith with the transfer saga's definition
// changed by the test.
func newFixtureDef(t testing.TB, store persistence.EventStore, clock *testkit.ManualClock, def saga.Definition[transfer, any, struct{}], opts saga.Options, rtOpts ...aggregate.RuntimeOption) *fixture {
	t.Helper()
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, store, append([]aggregate.RuntimeOption{aggregate.WithClock(clock), aggregate.WithLogger(quiet())}, rtOpts...)...)
	t.Cleanup(func() { _ = rt.Close() })
	wallets, err := aggregate.Register(rt, walletDefinition(), aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	transfers, err := saga.Register(rt, def, func(s transfer) transfer { s.Notes = slices.Clone(s.Notes); return s }, opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: clock, rt: rt, wallets: wallets, transfers: transfers}
	f.store, _ = store.(*memory.Store)
	return f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deliver encodes a domain event as the relay would publish it, and routes
// it to the saga.
func (f *fixture) deliver(t *testing.T, e any) persistence.RecordedEvent {
	t.Helper()
	rec, err := f.tryDeliver(ctxT(t), e)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// tryDeliver is deliver for any goroutine.
func (f *fixture) tryDeliver(ctx context.Context, e any) (persistence.RecordedEvent, error) {
	data, err := transferDefinition().Events.Marshal(e)
	if err != nil {
		return persistence.RecordedEvent{}, err
	}
	data.ID = fmt.Sprintf("domain-%d-%d", time.Now().UnixNano(), f.n.Add(1))
	rec := persistence.RecordedEvent{EventData: data, StreamID: "transfer/x"}
	return rec, f.transfers.Deliver(ctx, rec)
}

func (f *fixture) balance(t *testing.T, id string) int {
	t.Helper()
	res, err := f.wallets.State(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return res.State.Balance
}

// waitFor waits until the instance satisfies cond.
func (f *fixture) waitFor(t *testing.T, id string, cond func(saga.Instance[transfer]) bool) saga.Instance[transfer] {
	t.Helper()
	var inst saga.Instance[transfer]
	testkit.Eventually(t, 10*time.Second, func() bool {
		var err error
		inst, err = f.transfers.Instance(ctxT(t), id)
		return err == nil && cond(inst)
	})
	return inst
}

func debited(i saga.Instance[transfer]) bool { return i.Status == saga.Running && len(i.Pending) == 0 }

func TestHappyPath(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "t1", From: "alice", To: "bob", Amount: 30})
	f.waitFor(t, "t1", debited)
	f.deliver(t, TransferApproved{Transfer: "t1"})
	inst := f.waitFor(t, "t1", saga.Instance[transfer].Ended)
	if inst.Status != saga.Completed || len(inst.Timers) != 0 || len(inst.Compensations) != 0 || !inst.State.Approved {
		t.Fatalf("instance %+v", inst)
	}
	if a, b := f.balance(t, "alice"), f.balance(t, "bob"); a != 70 || b != 130 {
		t.Fatalf("balances %d/%d", a, b)
	}
	// The deadline, disarmed, never fires.
	f.clock.Advance(time.Hour)
	if inst := f.waitFor(t, "t1", saga.Instance[transfer].Ended); inst.Status != saga.Completed {
		t.Fatalf("late timer changed the outcome: %+v", inst)
	}
}

func TestFailedCreditIsCompensated(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "t2", From: "alice", To: "bob", Amount: 30, FailCredit: true})
	f.waitFor(t, "t2", debited)
	f.deliver(t, TransferApproved{Transfer: "t2"})
	inst := f.waitFor(t, "t2", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || !strings.Contains(inst.Reason, "credit failed: ") || !strings.Contains(inst.Reason, "account closed") {
		t.Fatalf("instance %+v", inst)
	}
	if a, b := f.balance(t, "alice"), f.balance(t, "bob"); a != 100 || b != 100 {
		t.Fatalf("balances %d/%d after compensation", a, b)
	}
}

func TestFailurePolicies(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	// Stop: the saga fails at once, without compensation.
	f.deliver(t, TransferRequested{Transfer: "stop", From: "carol", To: "dan", Amount: 10, FailCredit: true, Policy: saga.Stop})
	f.waitFor(t, "stop", debited)
	f.deliver(t, TransferApproved{Transfer: "stop"})
	inst := f.waitFor(t, "stop", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || !strings.HasPrefix(inst.Reason, "step credit failed") || f.balance(t, "carol") != 90 {
		t.Fatalf("stop: %+v, carol %d", inst, f.balance(t, "carol"))
	}
	// Skip: the failed step counts as done.
	f.deliver(t, TransferRequested{Transfer: "skip", From: "erin", To: "fay", Amount: 10, FailCredit: true, Policy: saga.Skip})
	f.waitFor(t, "skip", debited)
	f.deliver(t, TransferApproved{Transfer: "skip"})
	inst = f.waitFor(t, "skip", saga.Instance[transfer].Ended)
	if inst.Status != saga.Completed {
		t.Fatalf("skip: %+v", inst)
	}
}

func TestRejectedFirstStepFails(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "t3", From: "alice", To: "bob", Amount: 500})
	inst := f.waitFor(t, "t3", saga.Instance[transfer].Ended)
	// The rejection reaches Handle as one (errors.Is ErrRejected), with the
	// handler's own message.
	if inst.Status != saga.Failed || inst.Reason != "debit refused: insufficient funds" || len(inst.Timers) != 0 {
		t.Fatalf("instance %+v", inst)
	}
}

func TestDeadlineCompensates(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "t4", From: "alice", To: "bob", Amount: 40})
	f.waitFor(t, "t4", debited)
	f.clock.Advance(time.Minute)
	inst := f.waitFor(t, "t4", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || inst.Reason != "approval deadline missed" || f.balance(t, "alice") != 100 {
		t.Fatalf("instance %+v, alice %d", inst, f.balance(t, "alice"))
	}
	// An approval that comes too late changes nothing.
	f.deliver(t, TransferApproved{Transfer: "t4"})
	if inst := f.waitFor(t, "t4", saga.Instance[transfer].Ended); inst.State.Approved || f.balance(t, "bob") != 100 {
		t.Fatalf("late approval was handled: %+v", inst)
	}
}

// TestTimerSurvivesRestart stops the runtime while the saga waits for its
// approval; in a new runtime the deadline still fires — once — though
// nothing activates the instance: the timer is a row the scheduler reads.
func TestTimerSurvivesRestart(t *testing.T) {
	store, clock := memory.New(), testkit.NewManualClock(time.Unix(0, 0))
	f := newFixture(t, store, clock)
	f.deliver(t, TransferRequested{Transfer: "t5", From: "alice", To: "bob", Amount: 25})
	f.waitFor(t, "t5", debited)
	_ = f.rt.Close()

	g := newFixture(t, store, clock)
	clock.Advance(time.Minute)
	inst := g.waitFor(t, "t5", saga.Instance[transfer].Ended)
	if inst.Status != saga.Failed || g.balance(t, "alice") != 100 {
		t.Fatalf("after restart: %+v, alice %d", inst, g.balance(t, "alice"))
	}
	// Exactly one refund: alice's stream holds the debit and one credit.
	events, err := store.Load(ctxT(t), "wallet/alice", 1)
	if err != nil || len(events) != 2 {
		t.Fatalf("alice's stream: %d events (%v)", len(events), err)
	}
}

func TestDuplicatesAndStrictRouting(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	rec := f.deliver(t, TransferRequested{Transfer: "t6", From: "alice", To: "bob", Amount: 10})
	f.waitFor(t, "t6", debited)
	// The same event again (a redelivery), and a second start for the
	// running instance: neither debits again.
	if err := f.transfers.Deliver(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	f.deliver(t, TransferRequested{Transfer: "t6", From: "alice", To: "bob", Amount: 10})
	// A continue for an instance that never started is ignored.
	f.deliver(t, TransferApproved{Transfer: "nobody"})
	if inst, _ := f.transfers.Instance(ctxT(t), "nobody"); inst.Status != saga.NotStarted {
		t.Fatalf("continue started an instance: %+v", inst)
	}
	if b := f.balance(t, "alice"); b != 90 {
		t.Fatalf("alice %d: debited more than once", b)
	}
}

func TestUnexpectedErrorsFailVisibly(t *testing.T) {
	for _, panics := range []bool{false, true} {
		f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
		id := fmt.Sprint("boom-", panics)
		f.deliver(t, TransferRequested{Transfer: id, From: "alice", To: "bob", Amount: 10})
		f.waitFor(t, id, debited)
		f.deliver(t, Explode{Transfer: id, Panic: panics})
		inst := f.waitFor(t, id, saga.Instance[transfer].Ended)
		if inst.Status != saga.Failed || !strings.HasPrefix(inst.Reason, "unexpected: ") {
			t.Fatalf("panic=%v: %+v", panics, inst)
		}
		if f.balance(t, "alice") != 90 {
			t.Fatal("an unexpected error must not roll back silently")
		}
	}
}

func TestDefinitionIsValidated(t *testing.T) {
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	defer sys.Close()
	rt := aggregate.NewRuntime(sys, memory.New())
	defer rt.Close()
	_, err := saga.Register(rt, saga.Definition[transfer, any, struct{}]{Type: "a/b"}, nil, saga.Options{})
	if err == nil || !strings.Contains(err.Error(), "Type") || !strings.Contains(err.Error(), "registries") || !strings.Contains(err.Error(), "Route") {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitReturnsWhenTheInstanceEnds(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	done := make(chan saga.Instance[transfer], 1)
	errs := make(chan error, 1)
	go func() {
		inst, err := f.transfers.Wait(ctxT(t), "w1") // before it even starts
		errs <- err
		done <- inst
	}()
	f.deliver(t, TransferRequested{Transfer: "w1", From: "alice", To: "bob", Amount: 5})
	f.waitFor(t, "w1", debited)
	select {
	case <-done:
		t.Fatal("Wait returned before the end")
	default:
	}
	f.deliver(t, TransferApproved{Transfer: "w1"})
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if inst := <-done; inst.Status != saga.Completed {
		t.Fatalf("Wait returned %+v", inst)
	}
	// An ended instance: at once.
	if inst, err := f.transfers.Wait(ctxT(t), "w1"); err != nil || inst.Status != saga.Completed {
		t.Fatalf("second Wait: %+v, %v", inst, err)
	}
	// One that does not end: until ctx does.
	f.deliver(t, TransferRequested{Transfer: "w2", From: "alice", To: "bob", Amount: 5})
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if _, err := f.transfers.Wait(ctx, "w2"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled ctx: %v", err)
	}
}

// TestRunStopsQuietly: Run on an ended ctx returns nil, as a relay or
// subscriber does.
func TestRunStopsQuietly(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	f.deliver(t, TransferRequested{Transfer: "r1", From: "alice", To: "bob", Amount: 5})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := busmemory.New()
	if err := f.transfers.Run(ctx, b); err != nil {
		t.Fatalf("Run after ctx ended: %v", err)
	}
}

func TestStreams(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	if got := f.transfers.Stream("t1"); got != "saga-transfer/t1" || !saga.IsSagaStream(got) {
		t.Fatalf("Stream = %q", got)
	}
	if !saga.IsSagaStream("saga-other/1") || saga.IsSagaStream("wallet/alice") {
		t.Fatal("IsSagaStream misclassifies")
	}
}

// TestSkipMarkerIsPassedOver: a skip marker — the relay's stand-in for an
// event it could not publish — reaches no instance and is no failure.
func TestSkipMarkerIsPassedOver(t *testing.T) {
	f := newFixture(t, memory.New(), testkit.NewManualClock(time.Unix(0, 0)))
	data, err := transferDefinition().Events.Marshal(TransferRequested{Transfer: "m1", From: "alice", To: "bob", Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	data.ID = "skipped-1"
	marker := bus.SkipMarker(bus.Message{Topic: "transfers", Key: "transfer/m1",
		Event: persistence.RecordedEvent{EventData: data, StreamID: "transfer/m1", Version: 1}}, "too large")
	if err := f.transfers.Deliver(ctxT(t), marker.Event); err != nil {
		t.Fatalf("Deliver(marker) = %v", err)
	}
	if _, err := f.store.Load(ctxT(t), "saga-transfer/m1", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("the marker reached an instance: %v", err)
	}
}

package saga_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// TestEventsFlowThroughTheBus wires the production path: domain events
// appended to the store, published by the relay, consumed by saga.Run.
func TestEventsFlowThroughTheBus(t *testing.T) {
	store := memory.New()
	f := newFixture(t, store, testkit.NewManualClock(time.Unix(0, 0)))
	runWiring(t, store, f)

	appendEvent := func(stream string, expected persistence.ExpectedVersion, e any) {
		data, err := transferDefinition().Events.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		data.ID = stream + "/" + data.Type
		if _, err := store.Append(ctxT(t), stream, expected, data); err != nil {
			t.Fatal(err)
		}
	}
	appendEvent("transfer/t9", persistence.NoStream, TransferRequested{Transfer: "t9", From: "alice", To: "bob", Amount: 20})
	f.waitFor(t, "t9", debited)
	appendEvent("transfer/t9", 1, TransferApproved{Transfer: "t9"})
	inst := f.waitFor(t, "t9", saga.Instance[transfer].Ended)
	if inst.Status != saga.Completed || f.balance(t, "bob") != 120 {
		t.Fatalf("instance %+v, bob %d", inst, f.balance(t, "bob"))
	}
}

// TestProbeFollowsASagaThroughTheBus runs the production path — events
// appended to the store, relayed to the bus, consumed by saga.Run — with
// a probe on the runtime, and follows one transfer whose approval never
// comes: the debit the saga dispatches, its deadline armed and fired, the
// refund; and nothing after.
func TestProbeFollowsASagaThroughTheBus(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	probe := testkit.NewRuntimeProbe(t)
	f := newFixtureWith(t, store, clock, saga.Options{}, aggregate.WithObserver(probe))
	runWiring(t, store, f)
	data, err := transferDefinition().Events.Marshal(TransferRequested{Transfer: "t9", From: "alice", To: "bob", Amount: 20})
	if err != nil {
		t.Fatal(err)
	}
	data.ID = "transfer/t9/requested"
	if _, err := store.Append(ctxT(t), "transfer/t9", persistence.NoStream, data); err != nil {
		t.Fatal(err)
	}
	if h := probe.ExpectCommand("wallet", "alice", Debit{Amount: 20}); h.CommandID != saga.CommandID("transfer", "t9", "debit") {
		t.Fatalf("debit sent with command id %q", h.CommandID)
	}
	probe.ExpectEvent("wallet", "alice", Debited{Amount: 20})
	due := probe.ExpectTimerArmed("saga-transfer", "t9", "timer:deadline")
	if want := time.Unix(60, 0); !due.Equal(want) {
		t.Fatalf("deadline due %v, want %v", due, want)
	}
	clock.Advance(time.Minute)
	probe.ExpectTimerFired("saga-transfer", "t9", "timer:deadline")
	probe.ExpectCommand("wallet", "alice", Credit{Amount: 20})
	probe.ExpectEvent("wallet", "alice", Credited{Amount: 20})
	probe.ExpectNoMessage("wallet", 50*time.Millisecond)
}

// runWiring relays store's feed to an in-memory bus and runs f's saga on
// it, until the test ends.
func runWiring(t *testing.T, store *memory.Store, f *fixture) {
	t.Helper()
	b := busmemory.New()
	r, err := relay.New(relay.Config{Store: store, Publisher: b, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(),
		PollInterval: time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := f.transfers.Run(ctx, b); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

package saga_test

import (
	"context"
	"sync"
	"testing"
	"time"

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

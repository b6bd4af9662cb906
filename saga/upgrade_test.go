package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
)

// An earlier version kept no timer rows: a saga's instances were listed by
// an index stream, saga-index/<type>, and their timers and pending
// commands lived only in their events. These tests make such a store —
// instances run by this version, their rows removed, the index written as
// the earlier version wrote it — and upgrade it.

// dropRows removes every timer row of owner, as if an earlier version had
// run the instances.
func dropRows(t *testing.T, store persistence.EventStore, owner string) {
	t.Helper()
	ts := store.(persistence.TimerStore)
	rows, err := ts.Timers(ctxT(t), owner, persistence.Timer{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := ts.DeleteTimer(ctxT(t), r); err != nil {
			t.Fatal(err)
		}
	}
}

// writeIndex appends the earlier version's index entries: started ids,
// then ended ones.
func writeIndex(t *testing.T, store persistence.EventStore, sagaType string, started, ended []string) {
	t.Helper()
	var events []persistence.EventData
	entry := func(id, kind string, end bool) {
		data, _ := json.Marshal(map[string]any{"id": id, "ended": end})
		events = append(events, persistence.EventData{ID: "saga-index/" + sagaType + "/" + id + "/" + kind, Type: "saga.index", SchemaVersion: 1, Data: data})
	}
	for _, id := range started {
		entry(id, "start", false)
	}
	for _, id := range ended {
		entry(id, "end", true)
	}
	if _, err := store.Append(ctxT(t), "saga-index/"+sagaType, persistence.Any, events...); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeArmsTheTimersOfIndexedInstances: an instance waiting for its
// approval deadline, with no row, never compensates; Upgrade — run twice —
// arms one row, and the deadline fires once. An instance the index lists
// as ended is left alone, and an Upgrade after the end changes nothing. On
// the memory store and on PostgreSQL.
func TestUpgradeArmsTheTimersOfIndexedInstances(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			clock := testkit.NewManualClock(time.Unix(0, 0))
			f := newFixtureWith(t, store, clock, saga.Options{})
			f.deliver(t, TransferRequested{Transfer: "u1", From: "alice", To: "bob", Amount: 10})
			testkit.Eventually(t, 10*time.Second, func() bool { // the debit landed and the saga recorded its outcome
				return countTypes(t, store, "wallet/alice")["wallet.debited"] == 1 && countTypes(t, store, "saga-transfer/u1")["saga.resulted"] == 1
			})
			_ = f.rt.Close()
			dropRows(t, store, "saga-transfer")
			writeIndex(t, store, "transfer", []string{"u1", "gone"}, []string{"gone"})

			g := newFixtureWith(t, store, clock, saga.Options{})
			for range 2 { // a second Upgrade records the same again
				n, err := g.transfers.Upgrade(ctxT(t))
				if err != nil || n != 1 {
					t.Fatalf("Upgrade = %d, %v; want 1 instance", n, err)
				}
			}
			rows, _ := store.(persistence.TimerStore).Timers(ctxT(t), "saga-transfer", persistence.Timer{}, 10)
			if len(rows) != 1 || rows[0].ID != "u1" || !strings.HasPrefix(rows[0].Name, "timer:") || !rows[0].Due.Equal(time.Unix(60, 0)) {
				t.Fatalf("rows after the upgrade: %+v; want u1's deadline, due when it was", rows)
			}
			clock.Advance(2 * time.Minute)
			waitStoredEnds(t, store, []string{"u1"}, "approval deadline missed")
			if n, err := g.transfers.Upgrade(ctxT(t)); err != nil || n != 1 {
				t.Fatalf("second Upgrade = %d, %v", n, err)
			}
			if fired, refunds := countTypes(t, store, "saga-transfer/u1")["saga.timer-fired"], countTypes(t, store, "wallet/alice")["wallet.credited"]; fired != 1 || refunds != 1 {
				t.Fatalf("deadline fired %d times, refunds %d; want once each", fired, refunds)
			}
			if _, ok := storedEnd(t, store, "gone"); ok || len(countTypes(t, store, "saga-transfer/gone")) != 0 {
				t.Fatal("Upgrade touched an instance the index lists as ended")
			}
		})
	}
}

// TestUpgradeGuardsPendingCommands: the debit was in flight, with no
// guard row, when the earlier version stopped. Upgrade dispatches it again
// and guards it; the wallet is debited once, and the saga goes on.
func TestUpgradeGuardsPendingCommands(t *testing.T) {
	mem := memory.New()
	store := &holdingWallets{Store: mem, reached: make(chan struct{}), release: make(chan struct{})}
	store.held.Store(true)
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, store, clock, saga.Options{CommandTimeout: 10 * time.Second})
	f.deliver(t, TransferRequested{Transfer: "p1", From: "alice", To: "bob", Amount: 10})
	<-store.reached
	store.held.Store(false)
	close(store.release)
	_ = f.rt.Close() // the debit stays pending
	dropRows(t, mem, "saga-transfer")
	writeIndex(t, mem, "transfer", []string{"p1"}, nil)

	g := newFixtureWith(t, store, clock, saga.Options{CommandTimeout: 10 * time.Second})
	if n, err := g.transfers.Upgrade(ctxT(t)); err != nil || n != 1 {
		t.Fatalf("Upgrade = %d, %v", n, err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return countTypes(t, mem, "wallet/alice")["wallet.debited"] == 1 })
	clock.Advance(time.Minute) // the deadline: the saga compensates
	waitStoredEnds(t, mem, []string{"p1"}, "approval deadline missed")
	if counts := countTypes(t, mem, "wallet/alice"); counts["wallet.debited"] != 1 || counts["wallet.credited"] != 1 {
		t.Fatalf("alice's stream %v, want one debit and one refund", counts)
	}
	if rows, _ := mem.Timers(context.Background(), "saga-transfer", persistence.Timer{}, 10); len(rows) != 0 {
		t.Fatalf("an ended instance left rows: %+v", rows)
	}
}

// TestUpgradeRefusesACorruptIndex: an index entry that does not decode is
// reported as corrupt data, naming the entry.
func TestUpgradeRefusesACorruptIndex(t *testing.T) {
	store := memory.New()
	f := newFixtureWith(t, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{})
	if _, err := store.Append(ctxT(t), "saga-index/transfer", persistence.NoStream,
		persistence.EventData{ID: "bad-entry", Type: "saga.index", SchemaVersion: 1, Data: []byte(`[1]`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.transfers.Upgrade(ctxT(t)); !errors.Is(err, persistence.ErrCorrupt) || !strings.Contains(err.Error(), "bad-entry") {
		t.Fatalf("Upgrade of a corrupt index: %v, want ErrCorrupt naming the entry", err)
	}
}

// TestUpgradeArmsTheTimersOfAParkedInstance: an instance of the earlier
// version parked after the upgrade, before Upgrade ran: it has its mark
// but no row for its deadline. Upgrade arms the deadline; once resumed,
// the instance compensates when it falls due.
func TestUpgradeArmsTheTimersOfAParkedInstance(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, store, clock, saga.Options{})
	f.wallet(t, "alice", Close{})
	f.deliver(t, TransferRequested{Transfer: "p1", From: "alice", To: "bob", Amount: 10, Policy: saga.Park})
	f.waitParked(t, "p1")
	rows, _ := store.Timers(ctxT(t), "saga-transfer", persistence.Timer{}, 10)
	for _, r := range rows {
		if strings.HasPrefix(r.Name, "timer:") { // armed by the earlier version: no row
			if err := store.DeleteTimer(ctxT(t), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeIndex(t, store, "transfer", []string{"p1"}, nil)
	if n, err := f.transfers.Upgrade(ctxT(t)); err != nil || n != 1 {
		t.Fatalf("Upgrade = %d, %v", n, err)
	}
	if got, want := timerNames(t, store, "p1"), []string{"parked", "timer:deadline"}; !slices.Equal(got, want) {
		t.Fatalf("rows of the parked instance %v, want %v (no guard while parked)", got, want)
	}
	f.wallet(t, "alice", Reopen{})
	if err := f.transfers.Resume(ctxT(t), "p1"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return countTypes(t, store, "wallet/alice")["wallet.debited"] == 1 })
	clock.Advance(2 * time.Minute)
	waitStoredEnds(t, store, []string{"p1"}, "approval deadline missed")
	if n := countTypes(t, store, "wallet/alice")["wallet.credited"]; n != 1 {
		t.Fatalf("refunded %d times, want once", n)
	}
}

// TestUpgradePassesOverWhatItCannotUpgrade: an index entry with an id no
// instance can have (longer than any stream id) does not stop the upgrade of the others; the error
// counts and names it.
func TestUpgradePassesOverWhatItCannotUpgrade(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, store, clock, saga.Options{})
	f.deliver(t, TransferRequested{Transfer: "u1", From: "alice", To: "bob", Amount: 10})
	testkit.Eventually(t, 10*time.Second, func() bool { // the debit landed and the saga recorded its outcome
		return countTypes(t, store, "wallet/alice")["wallet.debited"] == 1 && countTypes(t, store, "saga-transfer/u1")["saga.resulted"] == 1
	})
	dropRows(t, store, "saga-transfer")
	long, _ := json.Marshal(map[string]string{"id": strings.Repeat("x", 1100)}) // longer than any stream id
	if _, err := store.Append(ctxT(t), "saga-index/transfer", persistence.NoStream,
		persistence.EventData{ID: "long-entry", Type: "saga.index", SchemaVersion: 1, Data: long}); err != nil {
		t.Fatal(err)
	}
	writeIndex(t, store, "transfer", []string{"u1"}, nil)
	n, err := f.transfers.Upgrade(ctxT(t))
	if n != 1 || err == nil || !strings.Contains(err.Error(), "1 instances not upgraded") || !errors.Is(err, aggregate.ErrInvalidID) {
		t.Fatalf("Upgrade = %d, %v; want u1 upgraded and the bad id reported", n, err)
	}
	if got := timerNames(t, store, "u1"); !slices.Equal(got, []string{"timer:deadline"}) {
		t.Fatalf("rows of u1: %v", got)
	}
}

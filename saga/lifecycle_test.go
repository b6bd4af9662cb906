package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/saga"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// The lifecycle edges of saga instances: timers and pending commands must
// survive eviction, passivation and restarts without anything reading the
// instance — looking at a stuck saga must not be what un-sticks it. These
// tests therefore watch the store, never the saga's own API, until the end.

// storedEnd returns the reason of an instance's end as its stream records
// it, and whether it ended.
func storedEnd(t *testing.T, store persistence.EventStore, id string) (string, bool) {
	t.Helper()
	events, err := store.Load(context.Background(), "saga-transfer/"+id, 1)
	if errors.Is(err, persistence.ErrStreamNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == "saga.ended" {
			var end struct{ Reason string }
			if err := json.Unmarshal(e.Data, &end); err != nil {
				t.Fatal(err)
			}
			return end.Reason, true
		}
	}
	return "", false
}

// waitStoredEnds waits until every instance's stream records its end with
// reason.
func waitStoredEnds(t *testing.T, store persistence.EventStore, ids []string, reason string) {
	t.Helper()
	pending := func() []string {
		var out []string
		for _, id := range ids {
			got, ok := storedEnd(t, store, id)
			if ok && got != reason {
				t.Fatalf("%s ended with %q, want %q", id, got, reason)
			}
			if !ok {
				out = append(out, id)
			}
		}
		return out
	}
	if !testkit.Eventually(t, 20*time.Second, func() bool { return len(pending()) == 0 }) {
		p := pending()
		t.Fatalf("%d of %d instances never ended (first %v)", len(p), len(ids), p[:min(len(p), 5)])
	}
}

// countTypes counts the events of each type in a stream.
func countTypes(t *testing.T, store persistence.EventStore, stream string) map[string]int {
	t.Helper()
	events, err := store.Load(context.Background(), stream, 1)
	if err != nil && !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range events {
		out[e.Type]++
	}
	return out
}

// TestEvictedInstancesDeadlinesFire is the first case: MaxLive 1,
// each new instance evicts the one before, which waits for a one-minute
// deadline; two minutes later every deadline has fired once and every
// debit was refunded — with nothing reading the instances. On the memory
// store and on PostgreSQL.
func TestEvictedInstancesDeadlinesFire(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixtureWith(t, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{MaxLive: 1})
			var ids []string
			for i := range 30 {
				id := fmt.Sprint("t", i)
				ids = append(ids, id)
				f.deliver(t, TransferRequested{Transfer: id, From: "w" + id, To: "bob", Amount: 10})
			}
			testkit.Eventually(t, 10*time.Second, func() bool { // every debit landed
				for _, id := range ids {
					if countTypes(t, store, "wallet/w"+id)["wallet.debited"] != 1 {
						return false
					}
				}
				return true
			})
			f.clock.Advance(2 * time.Minute)
			waitStoredEnds(t, store, ids, "approval deadline missed")
			for _, id := range ids {
				fired := countTypes(t, store, "saga-transfer/"+id)["saga.timer-fired"]
				refunds := countTypes(t, store, "wallet/w"+id)["wallet.credited"]
				if fired != 1 || refunds != 1 {
					t.Fatalf("%s: deadline fired %d times, refunds %d", id, fired, refunds)
				}
			}
		})
	}
}

// stores returns a fresh memory store and a fresh PostgreSQL store, by
// name.
func stores(t *testing.T) map[string]persistence.EventStore {
	t.Helper()
	pool := pgtest.Pool(t)
	pg, err := postgres.New(context.Background(), pool, postgres.WithSchema(pgtest.Schema(t, pool, "saga_life")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	return map[string]persistence.EventStore{"memory": memory.New(), "postgres": pg}
}

// TestOneAdvanceFiresTheIdleSweepAndTheDeadline: one clock step makes the
// instances idle and their deadlines due; whichever comes first, each
// deadline fires and its compensation is dispatched and done.
func TestOneAdvanceFiresTheIdleSweepAndTheDeadline(t *testing.T) {
	for round := range 5 {
		for name, store := range stores(t) {
			t.Run(fmt.Sprint(name, "-", round), func(t *testing.T) {
				f := newFixtureWith(t, store, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{IdleTimeout: time.Minute})
				var ids []string
				for i := range 20 {
					id := fmt.Sprintf("r%d-t%d", round, i)
					ids = append(ids, id)
					f.deliver(t, TransferRequested{Transfer: id, From: "w" + id, To: "bob", Amount: 10})
				}
				testkit.Eventually(t, 10*time.Second, func() bool {
					for _, id := range ids {
						if countTypes(t, store, "wallet/w"+id)["wallet.debited"] != 1 {
							return false
						}
					}
					return true
				})
				f.clock.Advance(time.Minute) // the idle sweep and the deadlines at once
				waitStoredEnds(t, store, ids, "approval deadline missed")
				for _, id := range ids {
					if n := countTypes(t, store, "wallet/w"+id)["wallet.credited"]; n != 1 {
						t.Fatalf("%s refunded %d times", id, n)
					}
				}
			})
		}
	}
}

// holdingWallets fails appends to wallet streams while held is set — once
// release is closed: a command the saga dispatched that never completes
// in this process (its retry waits for a clock that does not move).
type holdingWallets struct {
	*memory.Store
	held    atomic.Bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *holdingWallets) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	if s.held.Load() && strings.HasPrefix(stream, "wallet/") {
		s.once.Do(func() { close(s.reached) })
		<-s.release
		return persistence.AppendResult{}, errors.New("test: the wallet's write never completed")
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// TestPendingCommandResumesAfterARestart: the debit is in flight when the
// runtime stops. A new runtime over the store dispatches it again once its
// guard falls due — with nothing reading or delivering to the instance —
// and the saga goes on; the wallet is debited once.
func TestPendingCommandResumesAfterARestart(t *testing.T) {
	mem := memory.New()
	store := &holdingWallets{Store: mem, reached: make(chan struct{}), release: make(chan struct{})}
	store.held.Store(true)
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, store, clock, saga.Options{CommandTimeout: 10 * time.Second})
	f.deliver(t, TransferRequested{Transfer: "p1", From: "alice", To: "bob", Amount: 10})
	<-store.reached
	store.held.Store(false)
	close(store.release)
	_ = f.rt.Close() // the debit waits to be retried: it stays pending
	if n := countTypes(t, mem, "wallet/alice")["wallet.debited"]; n != 0 {
		t.Fatalf("debited %d times before the restart", n)
	}

	g := newFixtureWith(t, store, clock, saga.Options{CommandTimeout: 10 * time.Second})
	clock.Advance(10 * time.Second) // the guard falls due
	testkit.Eventually(t, 10*time.Second, func() bool {
		return countTypes(t, mem, "wallet/alice")["wallet.debited"] == 1
	})
	clock.Advance(time.Minute) // and the deadline: the saga compensates
	waitStoredEnds(t, mem, []string{"p1"}, "approval deadline missed")
	if counts := countTypes(t, mem, "wallet/alice"); counts["wallet.debited"] != 1 || counts["wallet.credited"] != 1 {
		t.Fatalf("alice's stream %v, want one debit and one refund", counts)
	}
	if timers, _ := mem.Timers(context.Background(), "saga-transfer", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("an ended instance left timers: %+v", timers)
	}
	_ = g
}

// countingStore counts the rows its reads return.
type countingStore struct {
	*memory.Store
	rows atomic.Int64
}

func (s *countingStore) Load(ctx context.Context, stream string, from int64) ([]persistence.RecordedEvent, error) {
	events, err := s.Store.Load(ctx, stream, from)
	s.rows.Add(int64(len(events)))
	return events, err
}

func (s *countingStore) ReadAll(ctx context.Context, after int64, limit int) ([]persistence.RecordedEvent, error) {
	events, err := s.Store.ReadAll(ctx, after, limit)
	s.rows.Add(int64(len(events)))
	return events, err
}

func (s *countingStore) Timers(ctx context.Context, owner string, after persistence.Timer, limit int) ([]persistence.Timer, error) {
	timers, err := s.Store.Timers(ctx, owner, after, limit)
	s.rows.Add(int64(len(timers)))
	return timers, err
}

func (s *countingStore) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	snap, ok, err := s.Store.LoadSnapshot(ctx, stream)
	if ok {
		s.rows.Add(1)
	}
	return snap, ok, err
}

// TestRecoveryIsOActive: 100,000 ended instances and 100 active ones; a
// new runtime reads rows for the active ones only — their timers, then
// their streams when the deadlines fire — never the ended ones.
func TestRecoveryIsOActive(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 instances")
	}
	mem := memory.New()
	ctx := context.Background()
	// The ended instances, written as the framework writes them.
	for i := range 100_000 {
		stream := fmt.Sprint("saga-transfer/ended-", i)
		_, err := mem.Append(ctx, stream, persistence.NoStream,
			persistence.EventData{ID: stream + "/1", Type: "saga.started", Data: []byte(`{}`)},
			persistence.EventData{ID: stream + "/2", Type: "saga.ended", Data: []byte(`{"Status":3}`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, mem, clock, saga.Options{})
	var ids []string
	for i := range 100 {
		id := fmt.Sprint("active-", i)
		ids = append(ids, id)
		f.deliver(t, TransferRequested{Transfer: id, From: "w" + id, To: "bob", Amount: 10})
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		timers, err := mem.Timers(ctx, "saga-transfer", persistence.Timer{}, 1000)
		return err == nil && len(timers) == 100 // the debits done: only the deadlines
	})
	_ = f.rt.Close()

	counting := &countingStore{Store: mem}
	g := newFixtureWith(t, counting, clock, saga.Options{})
	clock.Advance(time.Minute)
	waitStoredEnds(t, mem, ids, "approval deadline missed")
	_ = g.rt.Close()
	// Per active instance: its timer, its stream (a handful of events, read
	// again after each command in the worst case) and its wallet's: about
	// ten rows each.
	if rows := counting.rows.Load(); rows > 100*15 {
		t.Fatalf("recovery read %d rows for 100 active instances among 100,100", rows)
	} else {
		t.Logf("rows read: %d", rows)
	}
}

// failingWallets fails every append to a wallet stream: a debit fails
// transiently (the store), for ever.
type failingWallets struct{ *memory.Store }

func (s failingWallets) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	if strings.HasPrefix(stream, "wallet/") {
		return persistence.AppendResult{}, errors.New("test: wallet store down")
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// TestGuardDoesNotRestartRetries: a command whose retries outlast its
// guard — every attempt fails, the guard is a second — still runs out of
// retries and fails the saga; the guard firing while the dispatch runs
// does not start it over.
func TestGuardDoesNotRestartRetries(t *testing.T) {
	mem := memory.New()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	f := newFixtureWith(t, failingWallets{mem}, clock, saga.Options{CommandTimeout: time.Second})
	f.deliver(t, TransferRequested{Transfer: "p1", From: "alice", To: "bob", Amount: 10})
	ended := testkit.Eventually(t, 10*time.Second, func() bool {
		if clock.Now().Before(time.Unix(60, 0)) {
			clock.Advance(50 * time.Millisecond)
		}
		_, ok := storedEnd(t, mem, "p1")
		return ok
	})
	reason, _ := storedEnd(t, mem, "p1")
	if !ended || !strings.HasPrefix(reason, "debit failed") {
		t.Fatalf("after %v of clock: ended %v (%q), want the debit failed after its retries", clock.Now().Sub(time.Unix(0, 0)), ended, reason)
	}
	if counts := countTypes(t, mem, "saga-transfer/p1"); counts["saga.resumed"] == 0 {
		t.Fatalf("the guard never fired during the retries: %v", counts)
	}
}

// TestEndingLeavesNoTimers: sagas that end — failed by their first
// command's refusal, or completed — leave no timer rows behind.
func TestEndingLeavesNoTimers(t *testing.T) {
	mem := memory.New()
	f := newFixtureWith(t, mem, testkit.NewManualClock(time.Unix(0, 0)), saga.Options{})
	f.deliver(t, TransferRequested{Transfer: "t1", From: "alice", To: "bob", Amount: 500}) // refused: insufficient funds
	waitStoredEnds(t, mem, []string{"t1"}, "debit refused: insufficient funds")
	f.deliver(t, TransferRequested{Transfer: "t2", From: "carol", To: "dan", Amount: 10})
	f.deliver(t, TransferApproved{Transfer: "t2"})
	waitStoredEnds(t, mem, []string{"t2"}, "")
	if timers, _ := mem.Timers(context.Background(), "saga-transfer", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("ended instances left timers: %+v", timers)
	}
}

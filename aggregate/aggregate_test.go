package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) {
	if os.Getenv(envTimerChild) != "" {
		runTimerChild() // the process TestTimerFiresOnceAcrossKill9 kills
	}
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	store    *memory.Store
	clock    *testkit.ManualClock
	rt       *aggregate.Runtime
	accounts *aggregate.Type[account, command, event, env]
}

// newFixture starts a runtime over store (a new memory store when nil).
func newFixture(t *testing.T, store persistence.EventStore, opts aggregate.Options, mutate ...func(*aggregate.Definition[account, command, event, env])) *fixture {
	t.Helper()
	f := &fixture{clock: testkit.NewManualClock(time.Unix(0, 0))}
	if store == nil {
		f.store = memory.New()
		store = f.store
	}
	if m, ok := store.(*memory.Store); ok {
		f.store = m
	}
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	// A command lost to a dead letter would leave its caller waiting; other
	// dead letters are benign races, logged for the curious.
	var lost, benign []string
	var mu sync.Mutex
	sub := sys.ActorSystem().EventStream.Subscribe(func(msg any) {
		if dl, ok := msg.(*protoactor.DeadLetterEvent); ok {
			name := fmt.Sprintf("%T", dl.Message)
			mu.Lock()
			defer mu.Unlock()
			if strings.Contains(name, "envelope") {
				lost = append(lost, name)
			} else {
				benign = append(benign, name)
			}
		}
	})
	t.Cleanup(func() {
		sys.ActorSystem().EventStream.Unsubscribe(sub)
		mu.Lock()
		defer mu.Unlock()
		if len(lost) > 0 {
			t.Errorf("commands went to dead letters: %v", lost)
		}
		if len(benign) > 0 {
			t.Logf("dead letters: %v", benign)
		}
	})
	f.rt = aggregate.NewRuntime(sys, store, aggregate.WithClock(f.clock), aggregate.WithLogger(quiet()))
	t.Cleanup(func() { _ = f.rt.Close() })
	def := accountDefinition()
	for _, m := range mutate {
		m(&def)
	}
	var err error
	if f.accounts, err = aggregate.Register(f.rt, def, opts); err != nil {
		t.Fatal(err)
	}
	return f
}

// advance moves the clock once the passivation sweep has armed its timer,
// so that the sweep really runs.
func (f *fixture) advance(t *testing.T, d time.Duration) {
	t.Helper()
	if err := f.clock.BlockUntil(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(d)
}

// passivateAll advances the clock by idle steps until every aggregate has
// passivated (one that is writing a snapshot waits for the next sweep).
func (f *fixture) passivateAll(t *testing.T, idle time.Duration) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() bool {
		f.advance(t, idle)
		return f.accounts.Live() == 0
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCommandsAppendAndApply(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{})
	ctx := ctxT(t)
	res, err := f.accounts.Send(ctx, "a1", open{Owner: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if res.State.Owner != "ada" || res.Version != 1 || res.Position == 0 || len(res.Events) != 1 {
		t.Fatalf("result %+v", res)
	}
	res, err = f.accounts.Send(ctx, "a1", deposit{Amount: 50})
	if err != nil || res.State.Balance != 50 || res.Version != 2 {
		t.Fatalf("deposit: %+v, %v", res, err)
	}
	stored := f.store.Events()
	if len(stored) != 2 || stored[0].StreamID != "account/a1" || stored[1].Type != "account.deposited" {
		t.Fatalf("stored %+v", stored)
	}
	if got := stored[1].Metadata[persistence.MetadataCommandType]; got != "aggregate_test.deposit" {
		t.Fatalf("command type metadata %q", got)
	}
	if f.accounts.Stream("a1") != "account/a1" {
		t.Fatal("stream name")
	}
}

func TestRejectionWritesNothing(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{})
	ctx := ctxT(t)
	_, _ = f.accounts.Send(ctx, "a1", open{Owner: "ada"})
	_, err := f.accounts.Send(ctx, "a1", withdraw{Amount: 10})
	var rej *aggregate.RejectedError
	if !errors.Is(err, aggregate.ErrRejected) || !errors.Is(err, errInsufficient) || !errors.As(err, &rej) || rej.ID != "a1" {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.store.Events()); n != 1 {
		t.Fatalf("a rejected command wrote: %d events", n)
	}
}

func TestPanicsWriteNothingAndTheAggregateRecovers(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{})
	ctx := ctxT(t)
	_, _ = f.accounts.Send(ctx, "a1", deposit{Amount: 5})
	for _, c := range []command{boom{}, applyBoom{}} {
		if _, err := f.accounts.Send(ctx, "a1", c); !errors.Is(err, composable.ErrPanic) {
			t.Fatalf("%T: err = %v, want ErrPanic", c, err)
		}
	}
	if n := len(f.store.Events()); n != 1 {
		t.Fatalf("panicking commands wrote: %d events", n)
	}
	res, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1})
	if err != nil || res.State.Balance != 6 || res.Version != 2 {
		t.Fatalf("after panics: %+v, %v", res, err)
	}
}

func TestCommandIDDeduplicates(t *testing.T) {
	store := memory.New()
	f := newFixture(t, store, aggregate.Options{IdleTimeout: time.Minute, SnapshotEvery: 3})
	ctx := ctxT(t)
	first, err := f.accounts.Send(ctx, "a1", deposit{Amount: 10}, aggregate.WithCommandID("cmd-1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.accounts.Send(ctx, "a1", deposit{Amount: 10}, aggregate.WithCommandID("cmd-1"))
	if err != nil || !again.Duplicate || again.Version != first.Version || again.Position != first.Position ||
		len(again.Events) != 1 || again.State.Balance != 10 {
		t.Fatalf("retried command: %+v, %v", again, err)
	}
	// Enough commands for a snapshot, so the record must survive in it.
	for i := range 4 {
		_, _ = f.accounts.Send(ctx, "a1", deposit{Amount: 1}, aggregate.WithCommandID(fmt.Sprint("other-", i)))
	}
	// Passivate, then restart with a new runtime over the same store.
	f.passivateAll(t, time.Minute)
	_ = f.rt.Close()
	g := newFixture(t, store, aggregate.Options{})
	res, err := g.accounts.Send(ctx, "a1", deposit{Amount: 10}, aggregate.WithCommandID("cmd-1"))
	if err != nil || !res.Duplicate || res.Position != first.Position || res.State.Balance != 14 {
		t.Fatalf("after restart: %+v, %v", res, err)
	}
	if n := len(store.Events()); n != 5 {
		t.Fatalf("stream has %d events, want 5", n)
	}
}

// TestTwoActivationsRaceWithoutLosingOrDuplicating runs two runtimes over
// one store — two live actors for the same id, as a cluster may briefly
// have — and sends commands to both at once.
func TestTwoActivationsRaceWithoutLosingOrDuplicating(t *testing.T) {
	store := memory.New()
	opts := aggregate.Options{MaxAttempts: 50}
	a, b := newFixture(t, store, opts), newFixture(t, store, opts)
	ctx := ctxT(t)
	const perSide = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*perSide)
	for _, side := range []*fixture{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perSide {
				if _, err := side.accounts.Send(ctx, "shared", deposit{Amount: 1}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("command failed: %v", err)
	}
	events, err := store.Load(ctx, "account/shared", 1)
	if err != nil || len(events) != 2*perSide {
		t.Fatalf("%d events stored (%v), want %d: lost or duplicated", len(events), err, 2*perSide)
	}
	for _, side := range []*fixture{a, b} {
		res, err := side.accounts.State(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		// A side's view may lag until its next command; one more catches up.
		res, err = side.accounts.Send(ctx, "shared", deposit{Amount: 0})
		if err != nil || res.State.Balance != 2*perSide {
			t.Fatalf("balance %d (%v), want %d", res.State.Balance, err, 2*perSide)
		}
	}
}

func TestSnapshotsSpeedUpRehydrationAndMismatchesAreIgnored(t *testing.T) {
	store := &loadRecorder{Store: memory.New()}
	f := newFixture(t, store, aggregate.Options{SnapshotEvery: 10})
	ctx := ctxT(t)
	for range 25 {
		if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 2}); err != nil {
			t.Fatal(err)
		}
	}
	// Writes happen in the background, after the replies.
	testkit.Eventually(t, 5*time.Second, func() bool {
		snap, ok, _ := store.LoadSnapshot(ctx, "account/a1")
		return ok && snap.Version >= 10
	})
	_ = f.rt.Close()

	g := newFixture(t, store, aggregate.Options{SnapshotEvery: 10})
	res, err := g.accounts.State(ctx, "a1")
	if err != nil || res.State.Balance != 50 || res.Version != 25 {
		t.Fatalf("from snapshot: %+v, %v", res, err)
	}
	if from := store.lastFrom(); from <= 10 {
		t.Fatalf("rehydration loaded events from version %d: the snapshot was not used", from)
	}
	_ = g.rt.Close()

	// A new state schema version ignores the old snapshot and replays.
	h := newFixture(t, store, aggregate.Options{SnapshotEvery: 10}, func(d *aggregate.Definition[account, command, event, env]) {
		d.Snapshots.SchemaVersion = 2
	})
	res, err = h.accounts.State(ctx, "a1")
	if err != nil || res.State.Balance != 50 || res.Version != 25 || store.lastFrom() != 1 {
		t.Fatalf("replayed: %+v, %v (loaded from version %d)", res, err, store.lastFrom())
	}
}

func TestPassivationLosesNoCommand(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{IdleTimeout: time.Second})
	ctx := ctxT(t)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keep passivating while commands arrive
		defer wg.Done()
		for range 50 {
			f.advance(t, time.Second)
		}
	}()
	for i := range n {
		if _, err := f.accounts.Send(ctx, fmt.Sprint("acct-", i%7), deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	total := 0
	for i := range 7 {
		res, err := f.accounts.State(ctx, fmt.Sprint("acct-", i))
		if err != nil {
			t.Fatal(err)
		}
		total += res.State.Balance
	}
	if total != n {
		t.Fatalf("balances sum to %d, want %d", total, n)
	}
	f.passivateAll(t, time.Second)
}

func TestMaxLiveBoundsMemory(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{MaxLive: 3})
	ctx := ctxT(t)
	for i := range 10 {
		if _, err := f.accounts.Send(ctx, fmt.Sprint("a", i), deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		if live := f.accounts.Live(); live > 3 {
			t.Fatalf("%d live aggregates, cap 3", live)
		}
	}
	res, err := f.accounts.State(ctx, "a0") // evicted, rehydrated on demand
	if err != nil || res.State.Balance != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestEffectsFeedCommandsBack(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{})
	ctx := ctxT(t)
	if _, err := f.accounts.Send(ctx, "a1", holdLater{After: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	testkit.Eventually(t, 5*time.Second, func() bool {
		res, err := f.accounts.State(ctx, "a1")
		return err == nil && res.State.Holds == 1
	})
}

func TestOverloadAndShutdown(t *testing.T) {
	store := &gatedStore{EventStore: memory.New(), gate: make(chan struct{})}
	f := newFixture(t, store, aggregate.Options{MaxInFlight: 1})
	ctx := ctxT(t)
	first := make(chan error, 1)
	go func() { _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); first <- err }()
	testkit.Eventually(t, 5*time.Second, func() bool { return store.waiting() })
	if _, err := f.accounts.Send(ctx, "a2", deposit{Amount: 1}); !errors.Is(err, aggregate.ErrOverloaded) {
		t.Fatalf("second command: %v, want ErrOverloaded", err)
	}
	closed := make(chan struct{})
	go func() { _ = f.rt.Close(); close(closed) }()
	testkit.Eventually(t, 5*time.Second, func() bool {
		_, err := f.accounts.Send(ctx, "a3", deposit{Amount: 1})
		return errors.Is(err, aggregate.ErrShuttingDown)
	})
	close(store.gate) // the in-flight command finishes; then Close returns
	if err := <-first; err != nil {
		t.Fatalf("in-flight command during shutdown: %v", err)
	}
	<-closed
}

func TestStoreDownFailsFastThenRecovers(t *testing.T) {
	store := &flakyStore{EventStore: memory.New()}
	f := newFixture(t, store, aggregate.Options{MinBackoff: time.Second, MaxBackoff: time.Minute})
	ctx := ctxT(t)
	if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	store.setDown(true)
	_, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1})
	if !errors.Is(err, aggregate.ErrUnavailable) || !errors.Is(err, errDown) {
		t.Fatalf("store down: %v", err)
	}
	store.setDown(false)
	// Still backing off: refused without touching the store.
	calls := store.calls()
	if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); !errors.Is(err, aggregate.ErrUnavailable) || store.calls() != calls {
		t.Fatalf("during back-off: %v (store calls %d -> %d)", err, calls, store.calls())
	}
	f.clock.Advance(time.Second)
	res, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1})
	if err != nil || res.State.Balance != 2 || res.Version != 2 {
		t.Fatalf("after recovery: %+v, %v (never a false success before)", res, err)
	}
}

func TestTooManyAttempts(t *testing.T) {
	store := &conflictingStore{EventStore: memory.New()}
	f := newFixture(t, store, aggregate.Options{MaxAttempts: 3})
	_, err := f.accounts.Send(ctxT(t), "a1", deposit{Amount: 1})
	if !errors.Is(err, aggregate.ErrTooManyAttempts) {
		t.Fatalf("err = %v", err)
	}
	if n := store.appends(); n != 3 {
		t.Fatalf("%d append attempts, want 3", n)
	}
}

func TestUntypedSendAndValidation(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{})
	ctx := ctxT(t)
	reply, err := f.rt.Send(ctx, "account", "a1", deposit{Amount: 3})
	if err != nil || reply.Version != 1 || reply.State.(account).Balance != 3 {
		t.Fatalf("%+v, %v", reply, err)
	}
	if _, err := f.rt.Send(ctx, "nope", "a1", deposit{}); !errors.Is(err, aggregate.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := f.rt.Send(ctx, "account", "a1", "not a command"); !errors.Is(err, aggregate.ErrRejected) {
		t.Fatalf("wrong command type: %v", err)
	}
	_, err = aggregate.Register(f.rt, aggregate.Definition[account, command, event, env]{Type: "a/b"}, aggregate.Options{MaxAttempts: -1})
	if !errors.Is(err, aggregate.ErrInvalidDefinition) {
		t.Fatalf("bad definition: %v", err)
	}
	for _, want := range []string{"contains '/'", "Handle", "Apply", "Events", "MaxAttempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation error %q does not mention %s", err, want)
		}
	}
	if _, err := aggregate.Register(f.rt, accountDefinition(), aggregate.Options{}); !errors.Is(err, aggregate.ErrInvalidDefinition) {
		t.Fatalf("duplicate type: %v", err)
	}
	// Types no stream can be named after are refused at Register, not at
	// every command.
	for _, typ := range []string{"a\x00b", "a\xffb", strings.Repeat("t", 256)} {
		def := accountDefinition()
		def.Type = typ
		if _, err := aggregate.Register(f.rt, def, aggregate.Options{}); !errors.Is(err, aggregate.ErrInvalidDefinition) || len(err.Error()) > 256 {
			t.Fatalf("type %.20q: %v, want a short ErrInvalidDefinition", typ, err)
		}
	}
}

// failingSnapshots fails every snapshot write while failing is set.
type failingSnapshots struct {
	*memory.Store
	mu      sync.Mutex
	failing bool
	tries   int
}

func (s *failingSnapshots) SaveSnapshot(ctx context.Context, snap persistence.Snapshot) error {
	s.mu.Lock()
	s.tries++
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return errors.New("disk full")
	}
	return s.Store.SaveSnapshot(ctx, snap)
}

func (s *failingSnapshots) attempts() int { s.mu.Lock(); defer s.mu.Unlock(); return s.tries }

func TestFailedSnapshotWritesAreRetriedNotFatal(t *testing.T) {
	store := &failingSnapshots{Store: memory.New(), failing: true}
	f := newFixture(t, store, aggregate.Options{SnapshotEvery: 2})
	ctx := ctxT(t)
	for i := range 3 {
		if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); err != nil {
			t.Fatalf("command %d failed because a snapshot write failed: %v", i, err)
		}
	}
	testkit.Eventually(t, 5*time.Second, func() bool { return store.attempts() >= 1 })
	store.mu.Lock()
	store.failing = false
	store.mu.Unlock()
	// The next commands try again until a snapshot lands.
	testkit.Eventually(t, 5*time.Second, func() bool {
		if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 1}); err != nil {
			t.Fatal(err)
		}
		_, ok, _ := store.LoadSnapshot(ctx, "account/a1")
		return ok
	})
}

func TestSnapshotOnPassivation(t *testing.T) {
	store := memory.New()
	f := newFixture(t, store, aggregate.Options{SnapshotEvery: 1000, SnapshotOnPassivation: true, IdleTimeout: time.Minute})
	ctx := ctxT(t)
	for range 3 {
		_, _ = f.accounts.Send(ctx, "a1", deposit{Amount: 1})
	}
	if _, ok, _ := store.LoadSnapshot(ctx, "account/a1"); ok {
		t.Fatal("snapshot before passivation")
	}
	f.passivateAll(t, time.Minute)
	snap, ok, err := store.LoadSnapshot(ctx, "account/a1")
	if err != nil || !ok || snap.Version != 3 {
		t.Fatalf("after passivation: %+v, %v, %v", snap, ok, err)
	}
}

// TestOnActivateReArmsFromState: an aggregate that records a pending hold
// re-arms it whenever it becomes active again — here after a restart.
func TestOnActivateReArmsFromState(t *testing.T) {
	store := memory.New()
	withReArm := func(d *aggregate.Definition[account, command, event, env]) {
		d.OnActivate = func(s account, _ env) composable.Effect[command] {
			if s.Balance > 0 && s.Holds == 0 { // pending: a hold is due
				return composable.Delay(time.Minute, composable.Send[command](hold{}))
			}
			return composable.None[command]()
		}
	}
	f := newFixture(t, store, aggregate.Options{}, withReArm)
	ctx := ctxT(t)
	// Its first activation: nothing pending yet.
	if _, err := f.accounts.Send(ctx, "a1", deposit{Amount: 5}); err != nil {
		t.Fatal(err)
	}
	_ = f.rt.Close()
	g := newFixture(t, store, aggregate.Options{}, withReArm)
	if _, err := g.accounts.State(ctx, "a1"); err != nil { // activates: the hold is re-armed
		t.Fatal(err)
	}
	if err := g.clock.BlockUntil(ctx, 2); err != nil { // the passivation sweep's timer and the hold
		t.Fatal(err)
	}
	g.clock.Advance(time.Minute)
	testkit.Eventually(t, 5*time.Second, func() bool {
		res, err := g.accounts.State(ctx, "a1")
		return err == nil && res.State.Holds == 1
	})
}

// TestDirectCommandsSurviveEvictionAndPassivation: commands for live
// aggregates skip the manager. Many callers send to more ids than MaxLive
// allows while idle sweeps run, so activations stop all the time; every
// command is applied exactly once.
func TestDirectCommandsSurviveEvictionAndPassivation(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{MaxLive: 2, IdleTimeout: time.Second})
	ctx := ctxT(t)
	const callers, perCaller, ids = 8, 100, 5
	stopSweeping := f.keepSweeping(time.Second)
	hammer(t, callers, perCaller, func(c, i int) error {
		_, err := f.accounts.Send(ctx, fmt.Sprint("acct-", (c+i)%ids), deposit{Amount: 1})
		return err
	})
	stopSweeping()
	total := 0
	for i := range ids {
		res, err := f.accounts.State(ctx, fmt.Sprint("acct-", i))
		if err != nil {
			t.Fatal(err)
		}
		total += res.State.Balance
		if res.Version != int64(res.State.Balance) {
			t.Fatalf("acct-%d: version %d, balance %d", i, res.Version, res.State.Balance)
		}
	}
	if total != callers*perCaller {
		t.Fatalf("balances sum to %d, want %d", total, callers*perCaller)
	}
	f.passivateAll(t, time.Second)
}

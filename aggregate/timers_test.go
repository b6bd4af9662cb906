package aggregate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// An alarm clock: the aggregate the durable timer tests exercise. Each
// alarm is a durable timer; ringing records how often each alarm rang.

type alarms struct {
	Pending map[string]time.Time
	Rang    map[string]int
}

type alarmCmd interface{ isAlarmCmd() }

type (
	setAlarm struct {
		Name string
		At   time.Time
	}
	cancelAlarm  struct{ Name string }
	setAndCancel struct {
		Name string
		At   time.Time
	}
	timersOnly struct{ Name string } // arms a timer without an event: invalid
	ring       struct {
		Name string
		Due  time.Time
	}
)

func (setAlarm) isAlarmCmd()     {}
func (cancelAlarm) isAlarmCmd()  {}
func (setAndCancel) isAlarmCmd() {}
func (timersOnly) isAlarmCmd()   {}
func (ring) isAlarmCmd()         {}

type alarmEvent interface{ isAlarmEvent() }

type (
	AlarmSet struct {
		Name string
		At   time.Time
	}
	AlarmCancelled struct{ Name string }
	AlarmRang      struct{ Name string }
)

func (AlarmSet) isAlarmEvent()       {}
func (AlarmCancelled) isAlarmEvent() {}
func (AlarmRang) isAlarmEvent()      {}

type alarmDecision = aggregate.Decision[alarmCmd, alarmEvent]

func alarmDefinition() aggregate.Definition[alarms, alarmCmd, alarmEvent, struct{}] {
	reg := persistence.NewRegistry()
	must(persistence.Register[AlarmSet](reg, "alarm.set"))
	must(persistence.Register[AlarmCancelled](reg, "alarm.cancelled"))
	must(persistence.Register[AlarmRang](reg, "alarm.rang"))
	return aggregate.Definition[alarms, alarmCmd, alarmEvent, struct{}]{
		Type: "alarm",
		Handle: func(s alarms, c alarmCmd, _ struct{}) (alarmDecision, error) {
			switch c := c.(type) {
			case setAlarm:
				return aggregate.Emit[alarmCmd, alarmEvent](AlarmSet(c)).Arm(c.Name, c.At), nil
			case cancelAlarm:
				if _, ok := s.Pending[c.Name]; !ok {
					return alarmDecision{}, nil
				}
				return aggregate.Emit[alarmCmd, alarmEvent](AlarmCancelled(c)).Disarm(c.Name), nil
			case setAndCancel:
				return aggregate.Emit[alarmCmd, alarmEvent](AlarmSet(c), AlarmCancelled{Name: c.Name}).Arm(c.Name, c.At).Disarm(c.Name), nil
			case timersOnly:
				return alarmDecision{}.Arm(c.Name, time.Unix(1, 0)), nil
			case ring:
				if at, ok := s.Pending[c.Name]; !ok || !at.Equal(c.Due) {
					return alarmDecision{}, nil // cancelled or re-armed meanwhile
				}
				return aggregate.Emit[alarmCmd, alarmEvent](AlarmRang{Name: c.Name}), nil
			}
			return alarmDecision{}, fmt.Errorf("unknown command %T", c)
		},
		Apply: func(s *alarms, e alarmEvent) {
			if s.Pending == nil {
				s.Pending, s.Rang = map[string]time.Time{}, map[string]int{}
			}
			switch e := e.(type) {
			case AlarmSet:
				s.Pending[e.Name] = e.At
			case AlarmCancelled:
				delete(s.Pending, e.Name)
			case AlarmRang:
				delete(s.Pending, e.Name)
				s.Rang[e.Name]++
			}
		},
		Clone: func(s alarms) alarms {
			return alarms{Pending: maps.Clone(s.Pending), Rang: maps.Clone(s.Rang)}
		},
		OnTimer: func(name string, due time.Time) alarmCmd { return ring{Name: name, Due: due} },
		Events:  reg,
	}
}

type alarmFixture struct {
	clock  *testkit.ManualClock
	rt     *aggregate.Runtime
	alarms *aggregate.Type[alarms, alarmCmd, alarmEvent, struct{}]
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newAlarms(t testing.TB, store persistence.EventStore, clock *testkit.ManualClock, opts aggregate.Options, rtOpts ...aggregate.RuntimeOption) *alarmFixture {
	t.Helper()
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, store, append([]aggregate.RuntimeOption{aggregate.WithClock(clock), aggregate.WithLogger(quiet())}, rtOpts...)...)
	t.Cleanup(func() { _ = rt.Close() })
	typ, err := aggregate.Register(rt, alarmDefinition(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &alarmFixture{clock: clock, rt: rt, alarms: typ}
}

func (f *alarmFixture) rang(t *testing.T, id string) map[string]int {
	t.Helper()
	res, err := f.alarms.State(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return res.State.Rang
}

// waitRang waits until every id's alarm name rang, as the runtime's
// activations see it, and fails if one rang more than once.
func (f *alarmFixture) waitRang(t *testing.T, ids []string, name string) {
	t.Helper()
	waitRings(t, ids, name, func(id string) map[string]int { return f.rang(t, id) })
}

// waitRings waits until rings(id)[name] is 1 for every id, and fails if
// one rang more than once.
func waitRings(t *testing.T, ids []string, name string, rings func(id string) map[string]int) {
	t.Helper()
	missing := func() []string {
		var out []string
		for _, id := range ids {
			switch n := rings(id)[name]; {
			case n > 1:
				t.Fatalf("%s's %s rang %d times", id, name, n)
			case n == 0:
				out = append(out, id)
			}
		}
		return out
	}
	if !testkit.Eventually(t, 20*time.Second, func() bool { return len(missing()) == 0 }) {
		m := missing()
		t.Fatalf("%d of %d alarms never rang (first: %v)", len(m), len(ids), m[:min(len(m), 5)])
	}
}

func TestDurableTimerFiresOnceAtItsDueTime(t *testing.T) {
	store := memory.New()
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
	ctx := ctxT(t)
	if _, err := f.alarms.Send(ctx, "a", setAlarm{Name: "wake", At: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(59 * time.Minute)
	if got := f.rang(t, "a"); got["wake"] != 0 {
		t.Fatal("rang early")
	}
	f.clock.Advance(time.Minute)
	f.waitRang(t, []string{"a"}, "wake")
	if timers, _ := store.Timers(ctx, "alarm", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("a fired timer is still stored: %+v", timers)
	}
}

// TestTimerArmedAndCancelledInOneCommandNeverFires, and a timer cancelled
// by a later command neither.
func TestCancelledTimersNeverFire(t *testing.T) {
	store := memory.New()
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
	ctx := ctxT(t)
	if _, err := f.alarms.Send(ctx, "a", setAndCancel{Name: "same-command", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.alarms.Send(ctx, "a", setAlarm{Name: "later-command", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.alarms.Send(ctx, "a", cancelAlarm{Name: "later-command"}); err != nil {
		t.Fatal(err)
	}
	if timers, _ := store.Timers(ctx, "alarm", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("cancelled timers are stored: %+v", timers)
	}
	if _, err := f.alarms.Send(ctx, "a", setAlarm{Name: "control", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	f.waitRang(t, []string{"a"}, "control")
	if got := f.rang(t, "a"); len(got) != 1 {
		t.Fatalf("rang %v, want only the control", got)
	}
}

func TestTimersWithoutEventsAreRefused(t *testing.T) {
	store := memory.New()
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
	_, err := f.alarms.Send(ctxT(t), "a", timersOnly{Name: "x"})
	if !errors.Is(err, aggregate.ErrInvalidDecision) {
		t.Fatalf("%v, want ErrInvalidDecision", err)
	}
	_, err = f.alarms.Send(ctxT(t), "a", setAlarm{Name: "", At: epoch})
	if !errors.Is(err, aggregate.ErrInvalidDecision) || !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("a timer without a name: %v, want ErrInvalidDecision", err)
	}
	if events := store.Events(); len(events) != 0 {
		t.Fatalf("refused decisions wrote %d events", len(events))
	}
	// The aggregate still works.
	if _, err := f.alarms.Send(ctxT(t), "a", setAlarm{Name: "ok", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

// TestEvictedAggregatesTimersFire: with MaxLive 1, every aggregate but the
// last is evicted while its timer is pending; each fires once.
func TestEvictedAggregatesTimersFire(t *testing.T) {
	f := newAlarms(t, memory.New(), testkit.NewManualClock(epoch), aggregate.Options{MaxLive: 1})
	ctx := ctxT(t)
	var ids []string
	for i := range 20 {
		id := fmt.Sprint("a", i)
		ids = append(ids, id)
		if _, err := f.alarms.Send(ctx, id, setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return f.alarms.Live() <= 1 })
	f.clock.Advance(time.Minute)
	f.waitRang(t, ids, "wake")
}

// TestTenThousandTimersUnderMaxLive: 10,000 aggregates with timers due at
// ten different times, at most 100 live: every timer fires once, and none
// before its time.
func TestTenThousandTimersUnderMaxLive(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 aggregates")
	}
	store := memory.New()
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{MaxLive: 100})
	ctx := ctxT(t)
	const n, waves = 10_000, 10
	ids := make([][]string, waves)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				at := epoch.Add(time.Duration(i%waves+1) * time.Minute)
				if _, err := f.alarms.Send(ctx, fmt.Sprint("a", i), setAlarm{Name: "wake", At: at}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		ids[i%waves] = append(ids[i%waves], fmt.Sprint("a", i))
	}
	for w := range waves {
		f.clock.Advance(time.Minute)
		// A generous bound: a wave is 1,000 activations and evictions,
		// slow under the race detector on a loaded machine.
		testkit.Eventually(t, 2*time.Minute, func() bool {
			timers, err := store.Timers(ctx, "alarm", persistence.Timer{}, 1)
			return err == nil && (len(timers) == 0 || timers[0].Due.After(f.clock.Now()))
		})
		if w+1 < waves { // the next wave has not rung
			if got := f.rang(t, ids[w+1][0]); got["wake"] != 0 {
				t.Fatalf("wave %d rang early", w+1)
			}
		}
	}
	for w := range waves {
		f.waitRang(t, ids[w], "wake")
	}
}

// TestTwoSchedulersFireEachTimerOnce runs two runtimes on one store, each
// with its own scheduler and no lease between them — the worst overlap:
// each timer still fires once.
func TestTwoSchedulersFireEachTimerOnce(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(epoch)
	noLease := aggregate.WithLease(freeLease{})
	f := newAlarms(t, store, clock, aggregate.Options{}, noLease)
	g := newAlarms(t, store, clock, aggregate.Options{}, noLease)
	ctx := ctxT(t)
	var ids []string
	for i := range 200 {
		id := fmt.Sprint("a", i)
		ids = append(ids, id)
		if _, err := f.alarms.Send(ctx, id, setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	// Read the store, not the runtimes: each runtime's live activation of
	// an id misses what the other appended (a cluster would route both to
	// one activation).
	waitStoredRings(t, store, ids, "wake")
	if timers, _ := store.Timers(ctx, "alarm", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("timers left: %+v", timers)
	}
	_ = g
}

// storedRings counts the rings of each alarm of id that its stream
// records.
func storedRings(t *testing.T, store persistence.EventStore, id string) map[string]int {
	t.Helper()
	events, err := store.Load(context.Background(), "alarm/"+id, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range events {
		if e.Type == "alarm.rang" {
			var r AlarmRang
			if err := json.Unmarshal(e.Data, &r); err != nil {
				t.Fatal(err)
			}
			out[r.Name]++
		}
	}
	return out
}

// waitStoredRings waits until the store records that every id's alarm
// name rang, and fails if one rang more than once.
func waitStoredRings(t *testing.T, store persistence.EventStore, ids []string, name string) {
	t.Helper()
	waitRings(t, ids, name, func(id string) map[string]int { return storedRings(t, store, id) })
}

// freeLease grants every holder at once: two schedulers overlap.
type freeLease struct{}

func (freeLease) Acquire(context.Context, string) (<-chan struct{}, func(), error) {
	return nil, func() {}, nil
}

// flakyTimers fails timer reads while down.
type flakyTimers struct {
	*memory.Store
	mu   sync.Mutex
	down bool
}

func (s *flakyTimers) setDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

func (s *flakyTimers) Timers(ctx context.Context, owner string, after persistence.Timer, limit int) ([]persistence.Timer, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, errors.New("database down")
	}
	return s.Store.Timers(ctx, owner, after, limit)
}

// TestTimerDueWhileTheStoreIsDownFiresWhenItIsBack.
func TestTimerDueWhileTheStoreIsDownFiresWhenItIsBack(t *testing.T) {
	store := &flakyTimers{Store: memory.New()}
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
	ctx := ctxT(t)
	if _, err := f.alarms.Send(ctx, "a", setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	store.setDown(true)
	for range 5 { // due, and more: every read fails
		f.clock.Advance(time.Minute)
	}
	if got := f.rang(t, "a"); got["wake"] != 0 {
		t.Fatal("rang while the store was down")
	}
	store.setDown(false)
	testkit.Eventually(t, 10*time.Second, func() bool {
		f.clock.Advance(10 * time.Second) // past the scheduler's back-off
		return f.rang(t, "a")["wake"] == 1
	})
	f.waitRang(t, []string{"a"}, "wake")
}

// noDelete keeps DeleteTimer from deleting: only a firing's own
// transaction can remove its timer.
type noDelete struct{ *memory.Store }

func (noDelete) DeleteTimer(context.Context, persistence.Timer) error { return nil }

// TestFiringRemovesItsTimerWithItsEvents: the firing's events and the
// removal of its timer share a transaction — a scheduler that dies right
// after the firing leaves nothing to fire again — and a firing the
// aggregate ignores leaves the timer to the scheduler.
func TestFiringRemovesItsTimerWithItsEvents(t *testing.T) {
	store := noDelete{memory.New()}
	f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
	ctx := ctxT(t)
	if _, err := f.alarms.Send(ctx, "a", setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.waitRang(t, []string{"a"}, "wake")
	if timers, _ := store.Timers(ctx, "alarm", persistence.Timer{}, 10); len(timers) != 0 {
		t.Fatalf("the firing's transaction left its timer: %+v", timers)
	}
}

// neverLease never grants: a runtime with it runs no scheduler.
type neverLease struct{}

func (neverLease) Acquire(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// TestFiringCatchesUpAnOutOfDateActivation: the scheduler's process holds
// an activation of the aggregate from before another process armed the
// timer; the firing makes it catch up instead of being taken for stale.
func TestFiringCatchesUpAnOutOfDateActivation(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(epoch)
	arming := newAlarms(t, store, clock, aggregate.Options{}, aggregate.WithLease(neverLease{}))
	firing := newAlarms(t, store, clock, aggregate.Options{}, aggregate.WithLease(freeLease{}))
	ctx := ctxT(t)
	if _, err := firing.alarms.State(ctx, "a"); err != nil { // live in the firing process, at version 0
		t.Fatal(err)
	}
	if _, err := arming.alarms.Send(ctx, "a", setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	waitStoredRings(t, store, []string{"a"}, "wake")
}

// specialAlarms is the alarm clock with three kinds of faulty firings:
// "poison…" timers panic in Handle (retried: a panic may depend on the
// state), "invalid…" timers make a decision that cannot be stored (a timer
// without a name), "fx…" timers start an effect without recording an
// event.
func specialAlarms(t *testing.T, store persistence.EventStore, clock *testkit.ManualClock, opts aggregate.Options) *aggregate.Type[alarms, alarmCmd, alarmEvent, struct{}] {
	t.Helper()
	def := alarmDefinition()
	handle := def.Handle
	def.Handle = func(s alarms, c alarmCmd, env struct{}) (alarmDecision, error) {
		if c, ok := c.(ring); ok {
			switch {
			case strings.HasPrefix(c.Name, "poison"):
				panic("firing bug")
			case strings.HasPrefix(c.Name, "invalid"):
				return aggregate.Emit[alarmCmd, alarmEvent](AlarmRang{Name: c.Name}).Arm("", c.Due), nil
			case strings.HasPrefix(c.Name, "fx"):
				return alarmDecision{Effect: composable.Send[alarmCmd](setAlarm{Name: "effect-ran", At: c.Due.Add(time.Hour)})}, nil
			}
		}
		return handle(s, c, env)
	}
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, store, aggregate.WithClock(clock), aggregate.WithLogger(quiet()))
	t.Cleanup(func() { _ = rt.Close() })
	typ, err := aggregate.Register(rt, def, opts)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// TestFaultyFiringsAreDroppedAndStarveNothing: firings that keep failing,
// at the front of the table and more of them than the scheduler reads at
// once, are retried without hiding the timer behind them, which fires.
// Firings whose decisions cannot be carried out are dropped: one that
// cannot be stored, and one that would start an effect without recording
// an event — refused, so that its effect cannot run twice.
func TestFaultyFiringsAreDroppedAndStarveNothing(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(epoch)
	typ := specialAlarms(t, store, clock, aggregate.Options{TimerBatch: 2})
	ctx := ctxT(t)
	arm := func(id, name string, at time.Duration) {
		t.Helper()
		if _, err := typ.Send(ctx, id, setAlarm{Name: name, At: epoch.Add(at)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		arm(fmt.Sprint("p", i), "poison", time.Minute)
	}
	arm("invalid", "invalid", time.Minute)
	arm("fx", "fx", time.Minute)
	arm("good", "wake", 2*time.Minute)
	clock.Advance(2 * time.Minute)
	if !testkit.Eventually(t, 10*time.Second, func() bool {
		clock.Advance(time.Second) // the retries' back-off
		return storedRings(t, store, "good")["wake"] == 1
	}) {
		t.Fatal("the timer behind the failing ones never fired")
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		timers, err := store.Timers(ctx, "alarm", persistence.Timer{}, 10)
		return err == nil && len(timers) == 5 && timers[0].Name == "poison" && timers[4].Name == "poison"
	})
	res, err := typ.State(ctx, "fx")
	if err != nil || !res.State.Pending["effect-ran"].IsZero() {
		t.Fatalf("the refused firing's effect ran: %+v, %v", res.State, err)
	}
}

// TestOnTimerPanicDropsTheTimer: a panic in OnTimer drops that timer (logged),
// and the process and the other timers go on.
func TestOnTimerPanicDropsTheTimer(t *testing.T) {
	store := memory.New()
	clock := testkit.NewManualClock(epoch)
	def := alarmDefinition()
	def.OnTimer = func(name string, due time.Time) alarmCmd {
		if name == "bad" {
			panic("OnTimer bug")
		}
		return ring{Name: name, Due: due}
	}
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, store, aggregate.WithClock(clock), aggregate.WithLogger(quiet()))
	t.Cleanup(func() { _ = rt.Close() })
	typ, err := aggregate.Register(rt, def, aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, name := range []string{"bad", "good"} {
		if _, err := typ.Send(ctx, "a", setAlarm{Name: name, At: epoch.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	waitStoredRings(t, store, []string{"a"}, "good")
	testkit.Eventually(t, 10*time.Second, func() bool {
		timers, err := store.Timers(ctx, "alarm", persistence.Timer{}, 10)
		return err == nil && len(timers) == 0
	})
}

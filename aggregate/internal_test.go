package aggregate

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
)

// A minimal aggregate for white-box tests: a log of numbers.
type numbers struct{ Seen []int }
type add struct{ N int }
type added struct{ N int }

func numbersDef() Definition[numbers, add, added, struct{}] {
	reg := persistence.NewRegistry()
	if err := persistence.Register[added](reg, "added"); err != nil {
		panic(err)
	}
	return Definition[numbers, add, added, struct{}]{
		Type:   "numbers",
		Handle: func(_ numbers, c add, _ struct{}) (Decision[add, added], error) { return Emit[add](added(c)), nil },
		Apply:  func(s *numbers, e added) { s.Seen = append(s.Seen, e.N) },
		Clone:  func(s numbers) numbers { s.Seen = append([]int(nil), s.Seen...); return s },
		Events: reg,
	}
}

// blockingStore holds Load and Append calls while blocked.
type blockingStore struct {
	*memory.Store
	mu      sync.Mutex
	blocked chan struct{} // nil: pass through
	entered chan string   // receives "load"/"append" when a call blocks
}

func (s *blockingStore) wait(what string) {
	s.mu.Lock()
	b := s.blocked
	s.mu.Unlock()
	if b != nil {
		s.entered <- what
		<-b
	}
}

func (s *blockingStore) Load(ctx context.Context, stream string, from int64) ([]persistence.RecordedEvent, error) {
	s.wait("load")
	return s.Store.Load(ctx, stream, from)
}

func (s *blockingStore) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	s.wait("append")
	return s.Store.Append(ctx, stream, expected, events...)
}

func (s *blockingStore) block() { s.mu.Lock(); s.blocked = make(chan struct{}); s.mu.Unlock() }
func (s *blockingStore) release() {
	s.mu.Lock()
	close(s.blocked)
	s.blocked = nil
	s.mu.Unlock()
}

func startNumbers(t *testing.T, store persistence.EventStore) (*Runtime, *host[numbers, add, added, struct{}]) {
	t.Helper()
	rt, typ := startType(t, store, numbersDef(), Options{})
	return rt, typ.h
}

// post sends a command envelope through the manager without waiting.
func post(h *host[numbers, add, added, struct{}], n int) chan reply[numbers, added] {
	r := make(chan reply[numbers, added], 1)
	h.rt.sys.ActorSystem().Root.Send(h.manager, &envelope[numbers, add, added]{ctx: context.Background(), id: "x", cmd: add{N: n}, reply: r})
	return r
}

func wait(t *testing.T, r chan reply[numbers, added]) Result[numbers, added] {
	t.Helper()
	select {
	case rep := <-r:
		if rep.err != nil {
			t.Fatal(rep.err)
		}
		return rep.res
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
		return Result[numbers, added]{}
	}
}

// TestCommandsDuringRecoveryRunInArrivalOrder queues commands while the
// aggregate is still loading its stream.
func TestCommandsDuringRecoveryRunInArrivalOrder(t *testing.T) {
	store := &blockingStore{Store: memory.New(), entered: make(chan string, 1)}
	_, h := startNumbers(t, store)
	store.block()
	first := post(h, 1)
	if got := <-store.entered; got != "load" {
		t.Fatalf("blocked in %s, want the recovery's load", got)
	}
	var replies []chan reply[numbers, added]
	for n := 2; n <= 6; n++ {
		replies = append(replies, post(h, n))
	}
	store.release()
	wait(t, first)
	var last Result[numbers, added]
	for _, r := range replies {
		last = wait(t, r)
	}
	if fmt.Sprint(last.State.Seen) != "[1 2 3 4 5 6]" {
		t.Fatalf("applied in order %v", last.State.Seen)
	}
}

// stopping sets up an aggregate that the manager was asked to stop, and a
// command sent meanwhile, which waits in the manager. Command 1 ran; with
// busy, command 2 is blocked in the store's append (released by the
// caller) and the stop request is stale, as one is after the aggregate
// agreed to passivate and then took another command.
type stopping struct {
	rt     *Runtime
	h      *host[numbers, add, added, struct{}]
	store  *blockingStore
	old    *protoactor.PID
	pids   chan *protoactor.PID
	second chan reply[numbers, added] // with busy
	third  chan reply[numbers, added]
}

// respawned, if not nil, is called on the manager's goroutine when the
// next activation starts.
func stopWith(t *testing.T, busy bool, respawned func(*host[numbers, add, added, struct{}])) stopping {
	t.Helper()
	f := stopping{store: &blockingStore{Store: memory.New(), entered: make(chan string, 1)}, pids: make(chan *protoactor.PID, 2)}
	f.rt, f.h = startNumbers(t, f.store)
	f.h.spawned = func(_ string, pid *protoactor.PID) {
		if f.old != nil && respawned != nil {
			respawned(f.h)
		}
		f.pids <- pid
	}
	wait(t, post(f.h, 1))
	f.old = <-f.pids
	if busy {
		f.store.block()
		f.second = post(f.h, 2)
		if got := <-f.store.entered; got != "append" {
			t.Fatalf("blocked in %s", got)
		}
	}
	// Command 1 made the epoch 1: a passivateOK for it is current when
	// nothing else ran.
	f.rt.sys.ActorSystem().Root.Send(f.h.manager, passivateOK{pid: f.old, epoch: 1})
	f.third = post(f.h, 3)
	return f
}

// TestCommandDuringPassivationGoesToTheNextActivation passivates an idle
// aggregate and sends a command while it stops: the command waits for the
// old activation to stop and runs in a fresh one.
func TestCommandDuringPassivationGoesToTheNextActivation(t *testing.T) {
	f := stopWith(t, false, nil)
	res := wait(t, f.third)
	if res.Version != 2 || fmt.Sprint(res.State.Seen) != "[1 3]" {
		t.Fatalf("third: %+v", res)
	}
	if next := <-f.pids; next.Id == f.old.Id {
		t.Fatal("the third command ran in the stopping activation")
	}
}

// TestABusyAggregateRefusesToStop: a stop asked of an aggregate with work
// in flight — a command's append — is refused; the command held meanwhile
// runs in the same activation, after the one in flight.
func TestABusyAggregateRefusesToStop(t *testing.T) {
	f := stopWith(t, true, nil)
	f.store.release()
	if res := wait(t, f.second); res.Version != 2 {
		t.Fatalf("second: version %d", res.Version)
	}
	res := wait(t, f.third)
	if res.Version != 3 || fmt.Sprint(res.State.Seen) != "[1 2 3]" {
		t.Fatalf("third: %+v", res)
	}
	select {
	case pid := <-f.pids:
		t.Fatalf("a new activation %s started; the busy one should have stayed", pid.Id)
	default:
	}
	if live := f.h.live.Load(); live != 1 {
		t.Fatalf("%d live, want 1", live)
	}
}

// TestHeldCommandsRunBeforeDirectOnes: a command that waited in the manager
// while its aggregate stopped runs before one sent as the next activation
// starts — the direct route opens only once the held commands are in the
// new mailbox.
func TestHeldCommandsRunBeforeDirectOnes(t *testing.T) {
	fourth := make(chan reply[numbers, added], 1)
	f := stopWith(t, false, func(h *host[numbers, add, added, struct{}]) {
		// A caller sending right as the next activation starts.
		m := &envelope[numbers, add, added]{ctx: context.Background(), id: "x", cmd: add{N: 4}, reply: fourth}
		if !h.sendDirect(m) {
			h.rt.sys.ActorSystem().Root.Send(h.manager, m)
		}
	})
	wait(t, f.third)
	if res := wait(t, fourth); fmt.Sprint(res.State.Seen) != "[1 3 4]" {
		t.Fatalf("applied in order %v, want [1 3 4]", res.State.Seen)
	}
}

func TestDedupWindowEvictsOldest(t *testing.T) {
	w := newDedupWindow(2)
	for i := range 3 {
		w.add(commandRecord{ID: fmt.Sprint(i), Version: int64(i)})
	}
	if _, ok := w.get("0"); ok {
		t.Fatal("oldest not evicted")
	}
	env, err := encodeEnvelope([]byte(`{}`), w)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeEnvelope(env)
	if err != nil || len(back.Commands) != 2 || back.Commands[0].ID != "1" {
		t.Fatalf("%+v, %v", back, err)
	}
	var raw map[string]any
	_ = json.Unmarshal(env, &raw)
	raw["format"] = 99
	bad, _ := json.Marshal(raw)
	if _, err := decodeEnvelope(bad); err == nil {
		t.Fatal("unknown envelope format accepted")
	}
}

// TestSweepsDoNotPileUpChecks: a busy aggregate ignores passivation
// checks, so sweeps must not post a new one while one waits in its
// mailbox — a fast sweep would otherwise bury its commands under checks.
func TestSweepsDoNotPileUpChecks(t *testing.T) {
	store := &blockingStore{Store: memory.New(), entered: make(chan string, 1)}
	rt, typ := startType(t, store, numbersDef(), Options{IdleTimeout: time.Millisecond})
	h := typ.h
	wait(t, post(h, 1))
	store.block()
	second := post(h, 2) // holds the aggregate in its append
	if got := <-store.entered; got != "append" {
		t.Fatalf("blocked in %s", got)
	}
	r := h.routes.load("x")
	root := rt.sys.ActorSystem().Root
	eventually(t, func() bool { // until a sweep finds it idle long enough
		root.Send(h.manager, sweepIdle{})
		return r.queued.Load() > 0
	})
	for range 100 {
		root.Send(h.manager, sweepIdle{})
	}
	third := post(h, 3) // behind the sweeps in the manager's mailbox
	eventually(t, func() bool { return r.queued.Load() >= 2 })
	n := r.queued.Load()
	store.release()
	if n != 2 {
		t.Fatalf("%d messages waited in the aggregate's mailbox, want one check and one command", n)
	}
	wait(t, second)
	if res := wait(t, third); res.Version != 3 {
		t.Fatalf("third: %+v", res)
	}
}

// eventually waits, yielding, until cond holds, for at most 10 seconds.
// (testkit imports this package: its Eventually is out of reach here.)
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		runtime.Gosched()
	}
}

// TestPassPrunesRetryRecords: a pass that reads up to the marks (parked
// saga instances, say), page after page, has seen every timer that can
// fire, so the retry records of firings no longer pending are dropped —
// they would otherwise pile up — while those of pending timers in back-off
// stay, and nothing in back-off is fired.
func TestPassPrunesRetryRecords(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	now := time.Unix(600, 0)
	changes := []persistence.TimerChange{{Timer: persistence.Timer{Owner: "o", ID: "a", Name: "t", Due: time.Unix(60, 0), FireID: "kept"}}}
	for i := range 7 {
		changes = append(changes, persistence.TimerChange{Timer: persistence.Timer{Owner: "o", ID: fmt.Sprint("m", i), Name: "parked", Due: persistence.Never, FireID: fmt.Sprint("m", i)}})
	}
	if _, err := store.AppendWithTimers(ctx, "o/a", persistence.NoStream, []persistence.EventData{{ID: "e1", Type: "x", Data: []byte("{}")}}, changes); err != nil {
		t.Fatal(err)
	}
	s := &scheduler{owner: "o", store: store, clock: fixedClock{now}, batch: 2, width: 2,
		failed: map[string]retry{"gone": {failures: 1, at: now.Add(time.Hour)}, "kept": {failures: 2, at: now.Add(time.Minute)}}}
	f := s.newFiring(ctx)
	defer f.stop()
	dispatched, next, err := s.pass(ctx, nil, f)
	if err != nil || dispatched {
		t.Fatalf("pass: dispatched %v, %v; want nothing fired while in back-off", dispatched, err)
	}
	if _, ok := s.failed["gone"]; ok || len(s.failed) != 1 {
		t.Fatalf("retry records %v, want only kept", s.failed)
	}
	if !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("next %v, want the end of kept's back-off", next)
	}
}

// fixedClock reads one time.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                     { return c.t }
func (fixedClock) After(time.Duration) <-chan time.Time { return nil }

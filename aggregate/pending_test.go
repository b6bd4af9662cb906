package aggregate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
)

// asyncStore answers appends through callbacks, as the PostgreSQL store
// does; while held, it keeps them until release.
type asyncStore struct {
	*memory.Store
	mu     sync.Mutex
	hold   bool
	held   []func()
	queued chan struct{} // receives a token per held append
	fail   error         // the next append fails with it, if set
}

func newAsyncStore() *asyncStore {
	return &asyncStore{Store: memory.New(), queued: make(chan struct{}, 16)}
}

func (s *asyncStore) AppendAsync(_ context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, done func(persistence.AppendResult, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := s.fail
	s.fail = nil
	run := func() {
		if fail != nil {
			done(persistence.AppendResult{}, fail)
			return
		}
		done(s.Append(context.Background(), stream, expected, events...))
	}
	if s.hold {
		s.held = append(s.held, run)
		s.queued <- struct{}{}
		return nil
	}
	go run()
	return nil
}

func (s *asyncStore) setHold(h bool) { s.mu.Lock(); s.hold = h; s.mu.Unlock() }

// release runs the held appends.
func (s *asyncStore) release() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, run := range held {
		run()
	}
}

// startType starts a runtime on store hosting def; both close at cleanup.
func startType(t *testing.T, store persistence.EventStore, def Definition[numbers, add, added, struct{}], opts Options) (*Runtime, *Type[numbers, add, added, struct{}]) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sys := actor.NewSystem(actor.WithLogger(logger))
	t.Cleanup(func() { _ = sys.Close() })
	rt := NewRuntime(sys, store, WithLogger(logger))
	t.Cleanup(func() { _ = rt.Close() })
	typ, err := Register(rt, def, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rt, typ
}

type sent struct {
	res Result[numbers, added]
	err error
}

func sendAsync(ctx context.Context, typ *Type[numbers, add, added, struct{}], n int) chan sent {
	out := make(chan sent, 1)
	go func() {
		res, err := typ.Send(ctx, "x", add{N: n})
		out <- sent{res, err}
	}()
	return out
}

func received(t *testing.T, c chan sent) sent {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
		return sent{}
	}
}

// TestDeferredAppendIsSettledBeforeTheNextMessage: while a command's
// append is in flight, the next message to the aggregate waits for it and
// sees its events; the first caller is answered from the store's
// callback.
func TestDeferredAppendIsSettledBeforeTheNextMessage(t *testing.T) {
	store := newAsyncStore()
	_, typ := startType(t, store, numbersDef(), Options{})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil { // activates
		t.Fatal(err)
	}
	store.setHold(true)
	first := sendAsync(ctx, typ, 2)
	<-store.queued
	second := sendAsync(ctx, typ, 3) // held by settle, then appended (and held)
	select {
	case s := <-first:
		t.Fatalf("answered before its append completed: %+v", s)
	default:
	}
	store.setHold(false)
	store.release()
	got := received(t, first)
	if got.err != nil || got.res.Version != 2 || len(got.res.State.Seen) != 2 {
		t.Fatalf("first: %+v", got)
	}
	got = received(t, second)
	if got.err != nil || got.res.Version != 3 || len(got.res.State.Seen) != 3 || got.res.State.Seen[1] != 2 {
		t.Fatalf("second: %+v", got)
	}
	res, err := typ.State(ctx, "x")
	if err != nil || res.Version != 3 {
		t.Fatalf("state: %+v, %v", res, err)
	}
}

// TestDeferredAppendConflictIsRetried: a deferred append refused for a
// concurrency conflict is handled on the actor — catch up, decide again —
// and the caller gets the retried outcome, with nothing applied twice.
func TestDeferredAppendConflictIsRetried(t *testing.T) {
	store := newAsyncStore()
	_, typ := startType(t, store, numbersDef(), Options{})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil {
		t.Fatal(err)
	}
	// Another writer appends behind the actor's back; the store then
	// refuses the actor's next append as stale.
	other, _ := numbersDef().Events.Marshal(added{N: 100})
	other.ID = "other"
	if _, err := store.Append(ctx, "numbers/x", 1, other); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.fail = &persistence.ConcurrencyError{Stream: "numbers/x", Expected: 1, Actual: 2}
	store.mu.Unlock()
	res, err := typ.Send(ctx, "x", add{N: 2})
	if err != nil || res.Version != 3 || len(res.State.Seen) != 3 || res.State.Seen[1] != 100 {
		t.Fatalf("after the conflict: %+v, %v", res, err)
	}
	stored, err := store.Load(ctx, "numbers/x", 1)
	if err != nil || len(stored) != 3 {
		t.Fatalf("%d events stored (%v), want 3", len(stored), err)
	}
}

// TestDeferredAppendOverrunFailsTheCommand: an append the store does not
// answer within CommandTimeout fails the command with the deadline; when
// the store's late answer says it landed after all, the aggregate, which
// rehydrates, still counts it exactly once.
func TestDeferredAppendOverrunFailsTheCommand(t *testing.T) {
	store := newAsyncStore()
	_, typ := startType(t, store, numbersDef(), Options{CommandTimeout: 20 * time.Millisecond, MinBackoff: time.Nanosecond})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil {
		t.Fatal(err)
	}
	store.setHold(true)
	got := received(t, sendAsync(ctx, typ, 2))
	if !errors.Is(got.err, context.DeadlineExceeded) || !errors.Is(got.err, ErrUnavailable) {
		t.Fatalf("err = %v, want the command's deadline", got.err)
	}
	store.setHold(false)
	store.release() // the late append lands; its answer is ignored
	res, err := typ.State(ctx, "x")
	if err != nil || res.Version != 2 || len(res.State.Seen) != 2 || res.State.Seen[1] != 2 {
		t.Fatalf("after the late append: %+v, %v", res, err)
	}
	res2, err := typ.Send(ctx, "x", add{N: 3})
	if err != nil || res2.Version != 3 {
		t.Fatalf("next command: %+v, %v", res2, err)
	}
}

// TestCloseWaitsForDeferredAppends: Close answers the commands whose
// appends are in flight before it stops the aggregates.
func TestCloseWaitsForDeferredAppends(t *testing.T) {
	store := newAsyncStore()
	rt, typ := startType(t, store, numbersDef(), Options{})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil {
		t.Fatal(err)
	}
	store.setHold(true)
	pending := sendAsync(ctx, typ, 2)
	<-store.queued
	closed := make(chan struct{})
	go func() {
		_ = rt.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned with a command in flight")
	case <-time.After(20 * time.Millisecond):
	}
	store.release()
	if got := received(t, pending); got.err != nil || got.res.Version != 2 {
		t.Fatalf("in-flight command: %+v", got)
	}
	<-closed
	if _, err := typ.Send(ctx, "x", add{N: 3}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestIdleAggregateRunsCommandsInline: a command for a live aggregate with
// nothing queued and no append in flight — one that completed is taken in
// first — runs on the caller's goroutine; one that finds the aggregate
// busy goes through its mailbox, after what is queued.
func TestIdleAggregateRunsCommandsInline(t *testing.T) {
	store := newAsyncStore()
	var mu sync.Mutex
	inline := map[int]bool{}
	def := numbersDef()
	handle := def.Handle
	def.Handle = func(s numbers, c add, env struct{}) (Decision[add, added], error) {
		buf := make([]byte, 16<<10)
		mu.Lock()
		inline[c.N] = strings.Contains(string(buf[:runtime.Stack(buf, false)]), "sendDirect")
		mu.Unlock()
		return handle(s, c, env)
	}
	_, typ := startType(t, store, def, Options{})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil { // activates it, through the manager
		t.Fatal(err)
	}
	// Its actor may still hold the execution lock after replying: wait
	// until it is idle.
	r := typ.h.routes.load("x")
	for r.queued.Load() != 0 || !r.exec.TryLock() {
		runtime.Gosched()
	}
	r.exec.Unlock()
	for n := 2; n <= 3; n++ { // 3 takes in 2's completed append first
		if _, err := typ.Send(ctx, "x", add{N: n}); err != nil {
			t.Fatal(err)
		}
	}
	// Busy: an append in flight. The next command queues behind it.
	store.setHold(true)
	first := sendAsync(ctx, typ, 4)
	<-store.queued
	second := sendAsync(ctx, typ, 5)
	for len(second) == 0 && r.exec.TryLock() { // until 5 waits for 4, holding the lock
		r.exec.Unlock()
		runtime.Gosched()
	}
	store.setHold(false)
	store.release()
	for _, c := range []chan sent{first, second} {
		if got := received(t, c); got.err != nil {
			t.Fatal(got.err)
		}
	}
	res, err := typ.State(ctx, "x")
	if err != nil || len(res.State.Seen) != 5 {
		t.Fatalf("state: %+v, %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if inline[1] || !inline[2] || !inline[3] || !inline[4] || inline[5] {
		t.Fatalf("ran inline: %v; want 2, 3 and 4 (1 activated the aggregate, 5 found 4 in flight)", inline)
	}
}

// overrunningStore refuses appends, while refuse is set, as the
// PostgreSQL store does when a command overruns while the store's queue
// is full: the watchdog fires during AppendAsync (here: inside it), which
// then returns the deadline's error.
type overrunningStore struct {
	*asyncStore
	refuse bool // set before the runtime starts a command
}

func (s *overrunningStore) AppendAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, done func(persistence.AppendResult, error)) error {
	s.mu.Lock()
	refuse := s.refuse
	s.mu.Unlock()
	if !refuse {
		return s.asyncStore.AppendAsync(ctx, stream, expected, events, done)
	}
	c := ctx.(*commandContext)
	c.end(overran)
	if h := c.overrun.Load(); h != nil {
		h.listener.overrun()
	}
	return ctx.Err()
}

// TestOverrunDuringAppendAsyncLeavesNoWakeToken: when the watchdog
// completes a pending append whose AppendAsync then fails, the wake token
// it left is taken back; otherwise the next deferred append would be
// settled before it completed (state ahead of the store, a failure never
// answered, Close waiting for its slot forever).
func TestOverrunDuringAppendAsyncLeavesNoWakeToken(t *testing.T) {
	store := &overrunningStore{asyncStore: newAsyncStore()}
	rt, typ := startType(t, store, numbersDef(), Options{MinBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond})
	ctx := context.Background()
	if _, err := typ.Send(ctx, "x", add{N: 1}); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.refuse = true
	store.mu.Unlock()
	if _, err := typ.Send(ctx, "x", add{N: 2}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refused command: %v, want the deadline", err)
	}
	store.mu.Lock()
	store.refuse, store.hold, store.fail = false, true, errors.New("connection reset")
	store.mu.Unlock()
	third := sendAsync(ctx, typ, 3)
	<-store.queued
	query := make(chan sent, 1)
	go func() {
		res, err := typ.State(ctx, "x") // waits for the third command's append
		query <- sent{res, err}
	}()
	// Release the append only once the query is being handled: it holds
	// the aggregate's execution lock, waiting (unless it was answered
	// without waiting, which the check below reports).
	for r := typ.h.routes.load("x"); len(query) == 0 && r.exec.TryLock(); runtime.Gosched() {
		r.exec.Unlock()
	}
	store.setHold(false)
	go store.release() // the third command's append fails
	if got := received(t, query); got.err != nil || got.res.Version != 1 || len(got.res.State.Seen) != 1 {
		t.Fatalf("query: %+v; want version 1, seen [1]", got)
	}
	if got := received(t, third); !errors.Is(got.err, ErrUnavailable) {
		t.Fatalf("third command: %+v, want ErrUnavailable", got)
	}
	closed := make(chan sent, 1)
	go func() {
		closed <- sent{err: rt.Close()}
	}()
	received(t, closed)
}

// TestSequentialCallerIsNeverOverloaded: with one in-flight slot, a caller
// that waits for each reply never finds the slot taken — it is freed
// before the reply is sent, on the deferred path and the blocking one.
func TestSequentialCallerIsNeverOverloaded(t *testing.T) {
	for name, store := range map[string]persistence.EventStore{"deferred": newAsyncStore(), "blocking": memory.New()} {
		t.Run(name, func(t *testing.T) {
			_, typ := startType(t, store, numbersDef(), Options{MaxInFlight: 1})
			for i := range 2000 {
				if _, err := typ.Send(context.Background(), "x", add{N: i}); err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
			}
		})
	}
}

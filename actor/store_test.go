package actor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type state struct {
	Count int
	Log   []string
}

type action struct {
	Kind  string // "add", "panic", "later", "cancel", "log", "slow"
	N     int
	Label string
}

type env struct{}

type laterID struct{}

func reducer(s *state, a action, _ env) composable.Effect[action] {
	switch a.Kind {
	case "add":
		s.Count += a.N
	case "log":
		s.Log = append(s.Log, a.Label)
	case "panic":
		s.Count = -1000 // must not survive the panic
		panic("reducer bug")
	case "later":
		return composable.Cancellable(laterID{}, composable.Delay(time.Second, composable.Send(action{Kind: "add", N: a.N})))
	case "cancel":
		return composable.Cancel[action](laterID{})
	case "chain":
		if a.N > 0 {
			return composable.Send(action{Kind: "log", Label: a.Label}, action{Kind: "chain", N: a.N - 1, Label: a.Label})
		}
	}
	return composable.None[action]()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func spawn(t *testing.T, mutate ...func(*actor.Config[state, action, env])) (*actor.Store[state, action, env], *testkit.ManualClock) {
	t.Helper()
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	clock := testkit.NewManualClock(time.Unix(0, 0))
	cfg := actor.Config[state, action, env]{
		Reducer: composable.ReducerFunc[state, action, env](reducer),
		Clock:   clock,
		Clone: func(s state) state {
			s.Log = append([]string(nil), s.Log...)
			return s
		},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	st, err := actor.Spawn(sys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, clock
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAskReturnsStateAfterAction(t *testing.T) {
	st, _ := spawn(t)
	ctx := ctxT(t)
	got, err := st.Ask(ctx, action{Kind: "add", N: 2})
	if err != nil || got.Count != 2 {
		t.Fatalf("Ask = %+v, %v", got, err)
	}
}

func TestSendsAreReducedSeriallyInOrder(t *testing.T) {
	st, _ := spawn(t)
	ctx := ctxT(t)
	const senders, each = 8, 500
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := st.Send(ctx, action{Kind: "log", Label: string(rune('a'+g)) + strconv.Itoa(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Log) != senders*each {
		t.Fatalf("reduced %d actions, want %d", len(s.Log), senders*each)
	}
	// Each sender's actions keep their order.
	next := map[byte]int{}
	for _, l := range s.Log {
		g := l[0]
		i, _ := strconv.Atoi(l[1:])
		if i != next[g] {
			t.Fatalf("sender %c: got action %d, want %d", g, i, next[g])
		}
		next[g]++
	}
}

func TestEffectActionsAreFedBackInOrder(t *testing.T) {
	st, _ := spawn(t)
	ctx := ctxT(t)
	if err := st.Send(ctx, action{Kind: "chain", N: 5, Label: "x"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		s, _ := st.State(ctx)
		return len(s.Log) == 5
	})
}

func TestDelayedEffectFiresOnClock(t *testing.T) {
	st, clock := spawn(t)
	ctx := ctxT(t)
	if _, err := st.Ask(ctx, action{Kind: "later", N: 5}); err != nil {
		t.Fatal(err)
	}
	// Ask returned, so the effect started and armed its timer.
	if clock.Pending() != 1 {
		t.Fatalf("pending timers %d", clock.Pending())
	}
	clock.Advance(time.Second)
	waitUntil(t, func() bool {
		s, _ := st.State(ctx)
		return s.Count == 5
	})
}

func TestCancelledDelayNeverFires(t *testing.T) {
	st, clock := spawn(t)
	ctx := ctxT(t)
	_, _ = st.Ask(ctx, action{Kind: "later", N: 5})
	_, _ = st.Ask(ctx, action{Kind: "cancel"})
	clock.Advance(time.Hour)
	_, _ = st.Ask(ctx, action{Kind: "add", N: 1})
	s, _ := st.State(ctx)
	if s.Count != 1 {
		t.Fatalf("count %d, the cancelled timer fired", s.Count)
	}
}

func TestReducerPanicLeavesStateAndKeepsServing(t *testing.T) {
	st, _ := spawn(t)
	ctx := ctxT(t)
	_, _ = st.Ask(ctx, action{Kind: "add", N: 3})
	_, err := st.Ask(ctx, action{Kind: "panic"})
	var perr *composable.PanicError
	if !errors.Is(err, composable.ErrPanic) || !errors.As(err, &perr) || perr.Value != "reducer bug" {
		t.Fatalf("err = %v, want a PanicError", err)
	}
	got, err := st.Ask(ctx, action{Kind: "add", N: 1})
	if err != nil || got.Count != 4 {
		t.Fatalf("after panic: %+v, %v (state must be as before the panic)", got, err)
	}
}

func TestStopOnPanicStopsTheStore(t *testing.T) {
	st, _ := spawn(t, func(c *actor.Config[state, action, env]) { c.OnPanic = actor.StopOnPanic })
	ctx := ctxT(t)
	// Queue work behind the panic: it must be answered, not lost in silence.
	if err := st.Send(ctx, action{Kind: "panic"}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Ask(ctx, action{Kind: "add", N: 1})
	if !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("queued action after panic: err = %v, want ErrStopped", err)
	}
	if err := st.Send(ctx, action{Kind: "add"}); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("send after stop: %v", err)
	}
}

func TestCloseDrainsQueuedActionsThenRefuses(t *testing.T) {
	st, _ := spawn(t)
	ctx := ctxT(t)
	var answered atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Ask(ctx, action{Kind: "add", N: 1})
			switch {
			case err == nil:
				answered.Add(1)
			case errors.Is(err, actor.ErrStopped):
			default:
				t.Errorf("Ask during Close: %v", err)
			}
		}()
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every Ask got an answer: none hangs on a dropped message
	if _, err := st.Ask(ctx, action{Kind: "add"}); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("Ask after Close: %v", err)
	}
	if _, err := st.State(ctx); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("State after Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestCloseCancelsRunningEffects(t *testing.T) {
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	started, cancelled := make(chan struct{}), make(chan struct{})
	st, err := actor.Spawn(sys, actor.Config[int, string, struct{}]{
		Reducer: composable.ReducerFunc[int, string, struct{}](func(_ *int, _ string, _ struct{}) composable.Effect[string] {
			return composable.Run(func(ctx context.Context, _ func(string)) {
				close(started)
				<-ctx.Done()
				close(cancelled)
			})
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	<-started
	_ = sys.Close() // closes the store, which cancels and waits for the effect
	select {
	case <-cancelled:
	default:
		t.Fatal("System.Close returned before the effect ended")
	}
	if _, err := actor.Spawn(sys, actor.Config[int, string, struct{}]{Reducer: composable.ReducerFunc[int, string, struct{}](func(*int, string, struct{}) composable.Effect[string] { return composable.None[string]() })}); !errors.Is(err, actor.ErrStopped) {
		t.Fatalf("Spawn on closed system: %v", err)
	}
}

func TestAskHonoursContext(t *testing.T) {
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	release := make(chan struct{})
	st, err := actor.Spawn(sys, actor.Config[int, string, struct{}]{
		Reducer: composable.ReducerFunc[int, string, struct{}](func(s *int, a string, _ struct{}) composable.Effect[string] {
			if a == "block" {
				<-release // a badly behaved reducer, to keep the mailbox busy
			}
			*s++
			return composable.None[string]()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(context.Background(), "block")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := st.Ask(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := st.Send(done, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with done ctx: %v", err)
	}
	close(release)
}

func TestInterceptorsWrapReduceAndEffects(t *testing.T) {
	type key struct{}
	var (
		mu     sync.Mutex
		events []string
	)
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	effectDone := make(chan struct{})
	ic := actor.InterceptorFuncs{
		Reduce: func(ctx context.Context, info actor.ReduceInfo, next func(context.Context) error) {
			record("before " + info.Action.(action).Kind)
			err := next(context.WithValue(ctx, key{}, "span"))
			record("after " + info.Action.(action).Kind + " err=" + boolStr(err != nil))
		},
		Effect: func(ctx context.Context, info actor.EffectInfo) (context.Context, func(error)) {
			record("effect " + info.Action.(action).Kind)
			return ctx, func(err error) { record("effect done"); close(effectDone) }
		},
	}
	st, clock := spawn(t, func(c *actor.Config[state, action, env]) {
		c.Interceptors = []actor.Interceptor{ic, actor.InterceptorFuncs{}}
	})
	ctx := ctxT(t)
	_, _ = st.Ask(ctx, action{Kind: "later", N: 1})
	_, _ = st.Ask(ctx, action{Kind: "panic"})
	clock.Advance(time.Second)
	<-effectDone
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) == 8 })
	want := []string{
		"before later", "after later err=false", "effect later",
		"before panic", "after panic err=true",
		// The timer's action and the effect's end race each other.
		"before add", "after add err=false", "effect done",
	}
	mu.Lock()
	defer mu.Unlock()
	if events[5] == "effect done" {
		events = append(events[:5], events[6], events[7], events[5])
	}
	if !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

func TestInterceptorThatSkipsNextLosesNothing(t *testing.T) {
	st, _ := spawn(t, func(c *actor.Config[state, action, env]) {
		c.Interceptors = []actor.Interceptor{actor.InterceptorFuncs{
			Reduce: func(context.Context, actor.ReduceInfo, func(context.Context) error) {},
		}}
	})
	got, err := st.Ask(ctxT(t), action{Kind: "add", N: 1})
	if err != nil || got.Count != 1 {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestSpawnValidates(t *testing.T) {
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	_, err := actor.Spawn(sys, actor.Config[int, int, int]{OnPanic: 7, Interceptors: []actor.Interceptor{nil}})
	if !errors.Is(err, actor.ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, part := range []string{"Reducer", "OnPanic", "Interceptors[0]"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %s", err, part)
		}
	}
	cfg := actor.Config[int, int, int]{Name: "one", Reducer: composable.ReducerFunc[int, int, int](func(*int, int, int) composable.Effect[int] { return composable.None[int]() })}
	if _, err := actor.Spawn(sys, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := actor.Spawn(sys, cfg); !errors.Is(err, actor.ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	if !testkit.Eventually(t, 5*time.Second, cond) {
		t.FailNow()
	}
}

func boolStr(b bool) string { return strconv.FormatBool(b) }

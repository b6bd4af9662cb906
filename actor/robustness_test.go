package actor_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
)

// TestPanicsOutsideTheReducerAreAnswered: Clone and interceptors are user
// code too; a panic there must reach the asker as ErrPanic, not time out.
func TestPanicsOutsideTheReducerAreAnswered(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*actor.Config[state, action, env])
	}{
		{"clone", func(c *actor.Config[state, action, env]) {
			var once sync.Once
			c.Clone = func(s state) state {
				if s.Count == 1 {
					once.Do(func() { panic("clone bug") })
				}
				return s
			}
		}},
		{"interceptor", func(c *actor.Config[state, action, env]) {
			c.Interceptors = []actor.Interceptor{actor.InterceptorFuncs{
				Reduce: func(ctx context.Context, info actor.ReduceInfo, next func(context.Context) error) {
					if info.Action.(action).N == 1 {
						panic("interceptor bug")
					}
					_ = next(ctx)
				},
			}}
		}},
		{"effect interceptor", func(c *actor.Config[state, action, env]) {
			c.Interceptors = []actor.Interceptor{actor.InterceptorFuncs{
				Effect: func(context.Context, actor.EffectInfo) (context.Context, func(error)) {
					panic("effect interceptor bug")
				},
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := spawn(t, tt.mutate)
			ctx := ctxT(t)
			trigger := action{Kind: "add", N: 1}
			if tt.name == "effect interceptor" {
				trigger = action{Kind: "later", N: 1}
			}
			if _, err := st.Ask(ctx, trigger); !errors.Is(err, composable.ErrPanic) {
				t.Fatalf("err = %v, want ErrPanic", err)
			}
			if _, err := st.Ask(ctx, action{Kind: "add", N: 5}); err != nil {
				t.Fatalf("store stopped serving after the panic: %v", err)
			}
		})
	}
}

func TestSpawnRacingSystemCloseIsSafe(t *testing.T) {
	for range 20 {
		sys := actor.NewSystem(actor.WithLogger(quietLogger()))
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := actor.Spawn(sys, actor.Config[state, action, env]{Reducer: composable.ReducerFunc[state, action, env](reducer)})
				if err != nil && !errors.Is(err, actor.ErrStopped) {
					t.Errorf("Spawn: %v", err)
				}
				if err == nil {
					_ = st.Send(context.Background(), action{Kind: "add", N: 1})
				}
			}()
		}
		_ = sys.Close()
		wg.Wait()
	}
}

// TestInterceptorContextReachesTheEffect: what an interceptor puts in the
// context it passes to next (a span, say) is what the effect runs with.
func TestInterceptorContextReachesTheEffect(t *testing.T) {
	type spanKey struct{}
	seen := make(chan any, 4)
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	st, err := actor.Spawn(sys, actor.Config[int, string, struct{}]{
		Reducer: composable.ReducerFunc[int, string, struct{}](func(_ *int, a string, _ struct{}) composable.Effect[string] {
			if a != "go" {
				return composable.None[string]()
			}
			return composable.Run(func(ctx context.Context, send func(string)) {
				seen <- ctx.Value(spanKey{})
				send("back")
			})
		}),
		Interceptors: []actor.Interceptor{actor.InterceptorFuncs{
			Reduce: func(ctx context.Context, info actor.ReduceInfo, next func(context.Context) error) {
				if info.Action == "back" {
					seen <- ctx.Err() // an effect's action comes with a live context
				}
				_ = next(context.WithValue(ctx, spanKey{}, "span-of-"+info.Action.(string)))
			},
			Effect: func(ctx context.Context, _ actor.EffectInfo) (context.Context, func(error)) {
				seen <- ctx.Value(spanKey{})
				return ctx, nil
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Ask(ctxT(t), "go"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []any{"span-of-go", "span-of-go", nil} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("observation %d = %v, want %v", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("observation %d missing", i)
		}
	}
}

// TestNoActionOfACancelledEffectIsReducedAfterTheCancel queues an effect's
// action behind the action that cancels the effect.
func TestNoActionOfACancelledEffectIsReducedAfterTheCancel(t *testing.T) {
	emit, sent, unblock := make(chan struct{}), make(chan struct{}), make(chan struct{})
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	type jobID struct{}
	st, err := actor.Spawn(sys, actor.Config[[]string, string, struct{}]{
		Clone: func(s []string) []string { return append([]string(nil), s...) },
		Reducer: composable.ReducerFunc[[]string, string, struct{}](func(s *[]string, a string, _ struct{}) composable.Effect[string] {
			*s = append(*s, a)
			switch a {
			case "start":
				return composable.Cancellable(jobID{}, composable.Run(func(ctx context.Context, send func(string)) {
					<-emit
					send("late") // in the mailbox when send returns
					close(sent)
					<-ctx.Done()
				}))
			case "block":
				<-unblock // keeps the mailbox busy while the test queues more
			case "cancel":
				return composable.Cancel[string](jobID{})
			}
			return composable.None[string]()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	_, _ = st.Ask(ctx, "start")
	_ = st.Send(ctx, "block")
	_ = st.Send(ctx, "cancel")
	close(emit)
	<-sent // "late" is queued behind "cancel"
	close(unblock)
	got, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if a == "late" {
			t.Fatalf("reduced %v: the cancelled effect's action came after the cancel", got)
		}
	}
}

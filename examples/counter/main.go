// Command counter runs the counter reducer as an actor and prints what
// happens: plain increments, a delayed increment that fires after a second,
// and a reset that cancels one that never fires.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable/actor"
)

func main() {
	if err := run(context.Background(), os.Stdout, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "counter:", err)
		os.Exit(1)
	}
}

// run plays the demo, with delay as the delayed increment's wait.
func run(ctx context.Context, w io.Writer, delay time.Duration) error {
	// The interceptor writes from the actor's goroutine, main from this one.
	out := &lockedWriter{w: w}
	sys := actor.NewSystem(actor.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	defer sys.Close()

	store, err := actor.Spawn(sys, actor.Config[State, Action, Env]{
		Name:    "counter",
		Reducer: Reducer,
		Env:     Env{Delay: delay},
		// Print every action the actor reduces, effects' actions included:
		// interceptors are where tracing and metrics plug in.
		Interceptors: []actor.Interceptor{actor.InterceptorFuncs{
			Reduce: func(ctx context.Context, info actor.ReduceInfo, next func(context.Context) error) {
				err := next(ctx)
				fmt.Fprintf(out, "  reduced %s (err=%v)\n", name(info.Action), err)
			},
		}},
	})
	if err != nil {
		return err
	}

	step := func(a Action) (State, error) {
		s, err := store.Ask(ctx, a)
		if err == nil {
			fmt.Fprintf(out, "%-16s -> count=%d scheduled=%v\n", name(a), s.Count, s.Scheduled)
		}
		return s, err
	}
	for _, a := range []Action{Increment{}, Increment{}, Decrement{}, IncrementLater{}} {
		if _, err := step(a); err != nil {
			return err
		}
	}

	fmt.Fprintln(out, "waiting for the delayed increment...")
	deadline, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		s, err := store.State(deadline)
		if err != nil {
			return fmt.Errorf("delayed increment did not arrive: %w", err)
		}
		if !s.Scheduled {
			fmt.Fprintf(out, "%-16s -> count=%d scheduled=%v\n", fmt.Sprintf("(%v later)", delay), s.Count, s.Scheduled)
			break
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-deadline.Done():
			return fmt.Errorf("delayed increment did not arrive: %w", deadline.Err())
		}
	}

	for _, a := range []Action{IncrementLater{}, Reset{}} {
		if _, err := step(a); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "the reset cancelled the second delayed increment; closing")
	return store.Close()
}

// name returns an action's type name without the package.
func name(a any) string { return strings.TrimPrefix(fmt.Sprintf("%T", a), "main.") }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

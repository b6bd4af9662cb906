package testkit_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a testkit.TB that records failures instead of failing, so the
// kit's own failure paths can be asserted.
type recorder struct {
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recorder) Cleanup(f func())             { r.cleanups = append(r.cleanups, f) }

// finish runs the cleanups (as the testing package would) and returns the
// recorded failures.
func (r *recorder) finish() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
	return r.errs
}

type counter struct {
	Count int
	Tags  map[string]bool
}

type act string

type env struct{}

type tickID struct{}

var reducer = composable.ReducerFunc[counter, act, env](func(s *counter, a act, _ env) composable.Effect[act] {
	switch a {
	case "inc":
		s.Count++
	case "tag":
		if s.Tags == nil {
			s.Tags = map[string]bool{}
		}
		s.Tags["x"] = true
	case "inc-later":
		return composable.Cancellable(tickID{}, composable.Delay(time.Second, composable.Send[act]("inc")))
	case "cancel":
		return composable.Cancel[act](tickID{})
	case "echo":
		return composable.Send[act]("inc")
	case "panic":
		s.Count = 99
		panic("bug")
	case "effect-panic":
		return composable.Run(func(context.Context, func(act)) { panic("effect bug") })
	case "hang":
		return composable.Run(func(ctx context.Context, _ func(act)) { <-ctx.Done() })
	}
	return composable.None[act]()
})

func TestTestStorePassesAnExhaustiveScenario(t *testing.T) {
	ts := testkit.NewTestStore(t, reducer, counter{}, env{})
	ts.Send("inc", func(s *counter) { s.Count = 1 })
	ts.Send("tag", func(s *counter) { s.Tags = map[string]bool{"x": true} })
	ts.Send("inc-later", nil)
	ts.Advance(time.Second)
	ts.Receive("inc", func(s *counter) { s.Count = 2 })
	ts.Send("echo", nil)
	ts.Receive("inc", func(s *counter) { s.Count = 3 })
	ts.Send("inc-later", nil)
	ts.Send("cancel", nil)
	if got := ts.State(); got.Count != 3 {
		t.Fatalf("State() = %+v", got)
	}
}

func TestTestStoreReportsFailures(t *testing.T) {
	tests := []struct {
		name string
		run  func(ts *testkit.TestStore[counter, act, env])
		want []string // substrings, one per expected failure, in order
	}{
		{
			name: "wrong expected state",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("inc", func(s *counter) { s.Count = 2 }) },
			want: []string{"state differs"},
		},
		{
			name: "unasserted state change",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("inc", nil) },
			want: []string{"state differs"},
		},
		{
			name: "unasserted change inside a map",
			run: func(ts *testkit.TestStore[counter, act, env]) {
				ts.Send("tag", func(s *counter) { s.Tags = map[string]bool{} })
			},
			want: []string{"state differs"},
		},
		{
			name: "unreceived effect action",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("echo", nil) },
			want: []string{"1 received action(s) were not asserted"},
		},
		{
			name: "send while actions are pending",
			run: func(ts *testkit.TestStore[counter, act, env]) {
				ts.Send("echo", nil)
				ts.Send("tag", func(s *counter) { s.Tags = map[string]bool{"x": true} })
				ts.Receive("inc", func(s *counter) { s.Count = 1 })
			},
			want: []string{"while 1 received action(s) were not asserted"},
		},
		{
			name: "effect still running at the end",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("inc-later", nil) },
			want: []string{"1 effect(s) still running"},
		},
		{
			name: "long-running effect never cancelled",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("hang", nil) },
			want: []string{"1 effect(s) still running"},
		},
		{
			name: "received the wrong action",
			run: func(ts *testkit.TestStore[counter, act, env]) {
				ts.Send("echo", nil)
				ts.Receive("tag", nil)
			},
			want: []string{"unexpected action"},
		},
		{
			name: "nothing to receive",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Receive("inc", nil) },
			want: []string{"no action arrived"},
		},
		{
			name: "reducer panic leaves state unchanged",
			run: func(ts *testkit.TestStore[counter, act, env]) {
				ts.Send("panic", nil)
				ts.Send("inc", func(s *counter) { s.Count = 1 })
			},
			want: []string{"reducer panic: bug"},
		},
		{
			name: "effect panic",
			run:  func(ts *testkit.TestStore[counter, act, env]) { ts.Send("effect-panic", nil) },
			want: []string{"effect of testkit_test.act: panic: effect bug"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ts := testkit.NewTestStore(rec, reducer, counter{}, env{}, testkit.WithTimeout(50*time.Millisecond))
			tt.run(ts)
			errs := rec.finish()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d failures %q, want %d matching %q", len(errs), errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i], w) {
					t.Errorf("failure %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestFinishIsIdempotent(t *testing.T) {
	rec := &recorder{}
	ts := testkit.NewTestStore(rec, reducer, counter{}, env{}, testkit.WithTimeout(10*time.Millisecond))
	ts.Send("echo", nil)
	ts.Finish()
	ts.Finish()
	if errs := rec.finish(); len(errs) != 1 {
		t.Fatalf("failures %q, want exactly one", errs)
	}
}

func TestSharedClock(t *testing.T) {
	clock := testkit.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	ts := testkit.NewTestStore(t, reducer, counter{}, env{}, testkit.WithClock(clock))
	if ts.Clock() != clock {
		t.Fatal("store does not use the given clock")
	}
	ts.Send("inc-later", nil)
	clock.Advance(time.Second)
	ts.Receive("inc", func(s *counter) { s.Count = 1 })
}

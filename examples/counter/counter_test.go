package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReducer(t *testing.T) {
	ts := testkit.NewTestStore(t, Reducer, State{}, Env{Delay: time.Second})
	ts.Send(Increment{}, func(s *State) { s.Count = 1 })
	ts.Send(Decrement{}, func(s *State) { s.Count = 0 })
	ts.Send(IncrementLater{}, func(s *State) { s.Scheduled = true })
	ts.Advance(999 * time.Millisecond)
	ts.Send(Increment{}, func(s *State) { s.Count = 1 })
	ts.Advance(time.Millisecond)
	ts.Receive(delayedIncrement{}, func(s *State) { s.Count = 2; s.Scheduled = false })
}

func TestIncrementLaterRestartsTheWait(t *testing.T) {
	ts := testkit.NewTestStore(t, Reducer, State{}, Env{Delay: time.Second})
	ts.Send(IncrementLater{}, func(s *State) { s.Scheduled = true })
	ts.Advance(600 * time.Millisecond)
	ts.Send(IncrementLater{}, nil)
	ts.Advance(600 * time.Millisecond) // the first one would have fired here
	ts.Advance(400 * time.Millisecond)
	ts.Receive(delayedIncrement{}, func(s *State) { s.Count = 1; s.Scheduled = false })
}

func TestLateTimerAfterResetIsIgnored(t *testing.T) {
	ts := testkit.NewTestStore(t, Reducer, State{Count: 5}, Env{Delay: time.Second})
	ts.Send(delayedIncrement{}, nil) // nothing scheduled: a stale timer
}

func TestResetCancelsTheDelayedIncrement(t *testing.T) {
	ts := testkit.NewTestStore(t, Reducer, State{Count: 5}, Env{Delay: time.Second})
	ts.Send(IncrementLater{}, func(s *State) { s.Scheduled = true })
	ts.Send(Reset{}, func(s *State) { s.Count = 0; s.Scheduled = false })
	ts.Advance(time.Hour)
	// The store's Finish (at cleanup) fails if the increment still fires.
}

func TestActor(t *testing.T) {
	sys := actor.NewSystem()
	defer sys.Close()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store, err := actor.Spawn(sys, actor.Config[State, Action, Env]{
		Reducer: Reducer,
		Env:     Env{Delay: time.Second},
		Clock:   clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range []Action{Increment{}, Increment{}, IncrementLater{}} {
		if _, err := store.Ask(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	testkit.Eventually(t, 5*time.Second, func() bool {
		s, err := store.State(ctx)
		return err == nil && s == State{Count: 3}
	})
}

func TestRunPrintsWhatHappens(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"IncrementLater   -> count=1 scheduled=true",
		"reduced delayedIncrement",
		"(10ms later)     -> count=2 scheduled=false",
		"Reset            -> count=0 scheduled=false",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

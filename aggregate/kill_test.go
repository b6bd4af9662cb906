package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// The child process of TestTimerFiresOnceAcrossKill9 arms timers, lets its
// scheduler fire them and is killed with SIGKILL at a chosen point of the
// first firing. TestMain starts it when these variables are set.
const (
	envTimerChild       = "COMPOSABLE_TIMER_CHILD" // the kill point
	envTimerChildSchema = "COMPOSABLE_TIMER_CHILD_SCHEMA"
	timerChildAlarms    = 20
)

// killingStore kills its process during the first append of a firing — one
// that removes the timer it fires: before the append reaches the database,
// or once it committed, before anyone hears of it.
type killingStore struct {
	*postgres.Store
	point string
}

func firing(timers []persistence.TimerChange) bool {
	for _, c := range timers {
		if c.Cancel && c.Timer.FireID != "" {
			return true
		}
	}
	return false
}

func killSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

func (s killingStore) AppendWithTimersAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange, done func(persistence.AppendResult, error)) error {
	if firing(timers) {
		if s.point == "before-append" {
			killSelf()
		}
		reply := done
		done = func(res persistence.AppendResult, err error) {
			if err == nil {
				killSelf() // committed; the scheduler never learns of it
			}
			reply(res, err)
		}
	}
	return s.Store.AppendWithTimersAsync(ctx, stream, expected, events, timers, done)
}

func (s killingStore) AppendWithTimers(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange) (persistence.AppendResult, error) {
	if firing(timers) && s.point == "before-append" {
		killSelf()
	}
	res, err := s.Store.AppendWithTimers(ctx, stream, expected, events, timers)
	if firing(timers) && err == nil {
		killSelf()
	}
	return res, err
}

// runTimerChild arms the alarms, fires them, and is killed on the way.
func runTimerChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "timer child:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		fail(err)
	}
	store, err := postgres.New(ctx, pool, postgres.WithSchema(os.Getenv(envTimerChildSchema)), postgres.WithLogger(quiet()))
	if err != nil {
		fail(err)
	}
	clock := testkit.NewManualClock(epoch)
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	rt := aggregate.NewRuntime(sys, killingStore{Store: store, point: os.Getenv(envTimerChild)},
		aggregate.WithClock(clock), aggregate.WithLogger(quiet()), aggregate.WithLease(store))
	alarms, err := aggregate.Register(rt, alarmDefinition(), aggregate.Options{})
	if err != nil {
		fail(err)
	}
	for i := range timerChildAlarms {
		if _, err := alarms.Send(ctx, fmt.Sprint("a", i), setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
			fail(err)
		}
	}
	clock.Advance(time.Minute)
	<-time.After(time.Minute) // a guard: the kill comes long before
	fail(errors.New("never killed"))
}

// TestTimerFiresOnceAcrossKill9: a process is killed with SIGKILL during
// its scheduler's first firing — before the firing's append reached the
// database, or right after it committed, before the scheduler heard of
// it. A new runtime over the same database fires what is left: every
// timer fires exactly once.
func TestTimerFiresOnceAcrossKill9(t *testing.T) {
	for _, point := range []string{"before-append", "after-commit"} {
		t.Run(point, func(t *testing.T) {
			pool := pgtest.Pool(t)
			schema := pgtest.Schema(t, pool, "timer_kill")
			store := pgStore(t, pool, schema)
			cmd := exec.CommandContext(ctxT(t), os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envTimerChild+"="+point, envTimerChildSchema+"="+schema)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
			}
			ids := make([]string, timerChildAlarms)
			fired := 0
			for i := range ids {
				ids[i] = fmt.Sprint("a", i)
				fired += storedRings(t, store, ids[i])["wake"]
			}
			switch {
			case point == "after-commit" && fired == 0:
				t.Fatal("killed after a firing committed, but none is stored")
			case point == "before-append" && fired == timerChildAlarms:
				t.Fatal("killed before a firing's append, but every firing is stored")
			}
			t.Logf("%d of %d firings stored before the kill", fired, timerChildAlarms)
			// The next process: its clock reads the due time already.
			newAlarms(t, store, testkit.NewManualClock(epoch.Add(time.Minute)), aggregate.Options{})
			waitStoredRings(t, store, ids, "wake")
		})
	}
}

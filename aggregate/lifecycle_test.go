package aggregate_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// The lifecycle edges where actor runtimes lose work: a stop — passivation
// or eviction — must never cancel an effect that a handled command started,
// and a message that reaches an aggregate after it agreed to stop must
// still be handled.

// TestPassivationNeverCancelsAnEffect sends commands whose effects send a
// follow-up command, from many callers, while idle sweeps run all the
// time: every follow-up runs, exactly once.
func TestPassivationNeverCancelsAnEffect(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint("round-", round), func(t *testing.T) {
			f := newFixture(t, nil, aggregate.Options{IdleTimeout: time.Second, MaxLive: 3})
			ctx := ctxT(t)
			const callers, perCaller, ids = 8, 60, 5
			stopSweeping := f.keepSweeping(time.Second)
			hammer(t, callers, perCaller, func(c, i int) error {
				_, err := f.accounts.Send(ctx, fmt.Sprint("acct-", (c+i)%ids), depositThenHold{Amount: 1})
				return err
			})
			waitFollowUps(t, f.accounts, ids, callers*perCaller)
			stopSweeping()
		})
	}
}

// keepSweeping advances the clock by step, again and again, each time the
// passivation sweep has armed its timer, until the returned function is
// called.
func (f *fixture) keepSweeping(step time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f.clock.BlockUntil(ctx, 1) == nil {
			f.clock.Advance(step)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// TestEvictionNeverCancelsADelay: with MaxLive 1, aggregates with a
// pending Delay effect are asked to make room for others; they refuse, and
// every delayed command runs once when its time comes.
func TestEvictionNeverCancelsADelay(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{MaxLive: 1})
	ctx := ctxT(t)
	const n = 50
	for i := range n {
		if _, err := f.accounts.Send(ctx, fmt.Sprint("timed-", i), later{After: time.Minute, Then: hold{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.accounts.Send(ctx, fmt.Sprint("other-", i), deposit{Amount: 1}); err != nil { // evicts
			t.Fatal(err)
		}
	}
	f.clock.Advance(time.Minute)
	holds := func() int {
		total := 0
		for i := range n {
			res, err := f.accounts.State(ctx, fmt.Sprint("timed-", i))
			if err != nil {
				t.Fatal(err)
			}
			total += res.State.Holds
		}
		return total
	}
	if !testkit.Eventually(t, 10*time.Second, func() bool { return holds() == n }) {
		t.Fatalf("%d of %d delayed holds ran", holds(), n)
	}
	// Once the delays have run, the aggregates that refused are idle and
	// say so: they are evicted, back to MaxLive.
	if !testkit.Eventually(t, 10*time.Second, func() bool { return f.accounts.Live() <= 1 }) {
		t.Fatalf("%d live after the delays ran, MaxLive 1", f.accounts.Live())
	}
}

// TestOneAdvanceFiresTheIdleSweepAndATimer: one clock step makes an
// aggregate idle and fires its Delay, whose command starts an effect; the
// effect's follow-up runs whatever order the sweep and the timer take.
func TestOneAdvanceFiresTheIdleSweepAndATimer(t *testing.T) {
	f := newFixture(t, nil, aggregate.Options{IdleTimeout: time.Minute})
	ctx := ctxT(t)
	const n = 100
	for i := range n {
		id := fmt.Sprint("acct-", i)
		if _, err := f.accounts.Send(ctx, id, later{After: time.Minute, Then: depositThenHold{Amount: 1}}); err != nil {
			t.Fatal(err)
		}
		f.advance(t, time.Minute) // the sweep and the delay, in one step
		if !testkit.Eventually(t, 10*time.Second, func() bool {
			res, err := f.accounts.State(ctx, id)
			return err == nil && res.State.Balance == 1 && res.State.Holds == 1
		}) {
			res, err := f.accounts.State(ctx, id)
			t.Fatalf("%s: %+v, %v", id, res.State, err)
		}
	}
}

// TestRealClockPassivationNeverCancelsAnEffect: the same promise on the
// system clock, with an idle timeout so short that sweeps run between most
// commands.
func TestRealClockPassivationNeverCancelsAnEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("real time")
	}
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	defer func() { _ = sys.Close() }()
	rt := aggregate.NewRuntime(sys, memory.New(), aggregate.WithLogger(quiet()))
	defer func() { _ = rt.Close() }()
	accounts, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{IdleTimeout: time.Millisecond, MaxLive: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	const callers, perCaller, ids = 4, 500, 6
	hammer(t, callers, perCaller, func(c, i int) error {
		_, err := accounts.Send(ctx, fmt.Sprint("acct-", (c+i)%ids), depositThenHold{Amount: 1})
		return err
	})
	waitFollowUps(t, accounts, ids, callers*perCaller)
}

// hammer runs send(c, i) for i < perCaller from each of callers goroutines
// at once, and fails t with the first error.
func hammer(t *testing.T, callers, perCaller int, send func(c, i int) error) {
	t.Helper()
	var senders sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		senders.Go(func() {
			for i := range perCaller {
				if err := send(c, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	senders.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitFollowUps waits until accounts acct-0 … acct-(ids-1) hold want
// deposits in all, each with its follow-up hold, and fails the test if
// they never do.
func waitFollowUps(t *testing.T, accounts *aggregate.Type[account, command, event, env], ids, want int) {
	t.Helper()
	ctx := ctxT(t)
	totals := func() (deposits, holds int) {
		for i := range ids {
			res, err := accounts.State(ctx, fmt.Sprint("acct-", i))
			if err != nil {
				t.Fatal(err)
			}
			deposits, holds = deposits+res.State.Balance, holds+res.State.Holds
		}
		return deposits, holds
	}
	if !testkit.Eventually(t, 10*time.Second, func() bool { d, h := totals(); return d == h && d == want }) {
		d, h := totals()
		t.Fatalf("%d deposits, %d follow-up holds; want %d of each", d, h, want)
	}
}

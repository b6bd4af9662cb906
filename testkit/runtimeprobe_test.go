package testkit_test

import (
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/testkit"
)

// TestRuntimeProbeTakesEachPartOnce: a command, each of its events and
// each of its timers are expected separately, each once, in any order;
// what is left is what ExpectNoMessage sees.
func TestRuntimeProbeTakesEachPartOnce(t *testing.T) {
	p := testkit.NewRuntimeProbe(t)
	due := time.Unix(60, 0)
	p.Handled(aggregate.Handled{Type: "order", ID: "1", Command: "place", Events: []any{"placed", "placed"},
		Timers: []aggregate.Timer{{Name: "pay", Due: due}, {Name: "old", Cancel: true}, {Name: "pay", Due: due.Add(time.Hour)}}})
	p.Handled(aggregate.Handled{Type: "order", ID: "2", Command: "place", Err: aggregate.ErrRejected})
	p.TimerFired(aggregate.TimerFiring{Type: "order", ID: "1", Name: "pay", Due: due})

	p.ExpectEvent("order", "1", "placed")
	p.ExpectTimerFired("order", "", "pay")
	if got := p.ExpectTimerArmed("order", "1", "pay"); !got.Equal(due) {
		t.Fatalf("due %v, want %v", got, due)
	}
	if got := p.ExpectTimerArmed("order", "1", "pay"); !got.Equal(due.Add(time.Hour)) {
		t.Fatalf("second arm: due %v, want %v", got, due.Add(time.Hour))
	}
	p.ExpectTimerCancelled("order", "1", "old")
	p.ExpectEvent("order", "1", "placed") // the second one
	p.ExpectCommand("order", "1", "place")
	p.ExpectCommandFailed("order", "2", "place", aggregate.ErrRejected)
	// A duplicate's events are the original's; a failed firing is retried.
	p.Handled(aggregate.Handled{Type: "order", ID: "1", Command: "place", Events: []any{"placed"}, Duplicate: true})
	p.ExpectCommand("order", "1", "place")
	p.TimerFired(aggregate.TimerFiring{Type: "order", ID: "1", Name: "later", Err: aggregate.ErrUnavailable})
	p.ExpectNoMessage("order", 10*time.Millisecond)

	// Arriving later: Expect waits for it.
	go p.Handled(aggregate.Handled{Type: "order", ID: "3", Command: "ship"})
	p.ExpectCommand("order", "3", "ship")
}

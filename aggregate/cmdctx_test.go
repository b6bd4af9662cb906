package aggregate

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
)

type ctxKey struct{}

func TestCommandContext(t *testing.T) {
	var w watchdog
	defer w.close()
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))

	c := w.start(parent, time.Hour)
	cancelParent() // the caller gives up: the command's store calls go on
	if c.Value(ctxKey{}) != "v" || c.Err() != nil {
		t.Fatalf("value %v, err %v", c.Value(ctxKey{}), c.Err())
	}
	if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Fatalf("deadline %v, %v", d, ok)
	}
	w.fire() // a stale firing: the deadline has not passed
	if c.Err() != nil {
		t.Fatal("a firing before the deadline ended the command")
	}
	w.stop(c)
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("after the command: %v", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after the command")
	}
	w.fire() // no command running: nothing to end

	// An overrun: the entity's timer ends the context, and stop keeps the
	// reason.
	c2 := w.start(context.Background(), time.Millisecond)
	<-c2.Done()
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Fatalf("overrun: %v", c2.Err())
	}
	w.stop(c2)
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Fatalf("stop changed the reason: %v", c2.Err())
	}
}

// TestCommandContextCauseAndAfterFunc: the caller's cancellation cause
// stays out, like context.WithoutCancel's; AfterFunc and derived contexts
// follow the command's end.
func TestCommandContextCauseAndAfterFunc(t *testing.T) {
	var w watchdog
	defer w.close()
	parent, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("caller went away"))

	c := w.start(parent, time.Millisecond)
	<-c.Done()
	if got := context.Cause(c); !errors.Is(got, context.DeadlineExceeded) {
		t.Fatalf("Cause = %v, want the deadline", got)
	}
	w.stop(c)

	c2 := w.start(context.Background(), time.Hour)
	derived, cancelDerived := context.WithCancel(c2)
	defer cancelDerived()
	ran := make(chan struct{})
	context.AfterFunc(c2, func() { close(ran) })
	stopped := context.AfterFunc(c2, func() { t.Error("a stopped AfterFunc ran") })
	if !stopped() || stopped() {
		t.Fatal("stop must report true once, then false")
	}
	w.stop(c2)
	<-ran
	<-derived.Done()
	if !errors.Is(derived.Err(), context.Canceled) {
		t.Fatalf("derived: %v", derived.Err())
	}
	late := make(chan struct{})
	if context.AfterFunc(c2, func() { close(late) })() {
		t.Fatal("stop after the end reported true")
	}
	<-late // registered after the end: runs at once
}

// hangingStore's appends wait until their context ends.
type hangingStore struct{ *memory.Store }

func (hangingStore) Append(ctx context.Context, _ string, _ persistence.ExpectedVersion, _ ...persistence.EventData) (persistence.AppendResult, error) {
	<-ctx.Done()
	return persistence.AppendResult{}, ctx.Err()
}

// TestCommandTimeoutEndsHangingStoreCalls: the entity's timer ends a
// command whose store call overruns CommandTimeout; the caller gets an
// error, not a hang, and nothing is written.
func TestCommandTimeoutEndsHangingStoreCalls(t *testing.T) {
	store := hangingStore{memory.New()}
	_, typ := startType(t, store, numbersDef(), Options{CommandTimeout: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := typ.Send(ctx, "x", add{N: 1})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("err = %v (caller's ctx: %v), want the command's deadline", err, ctx.Err())
	}
	if events, _ := store.ReadAll(ctx, 0, 10); len(events) != 0 {
		t.Fatalf("%d events written", len(events))
	}
}

// TestCommandContextDropsStoppedAfterFuncs: a driver registers one
// AfterFunc per query and stops it when the query ends; the context keeps
// none of the stopped ones.
func TestCommandContextDropsStoppedAfterFuncs(t *testing.T) {
	var w watchdog
	defer w.close()
	c := w.start(context.Background(), time.Hour)
	for range 50 {
		if !context.AfterFunc(c, func() { t.Error("stopped AfterFunc ran") })() {
			t.Fatal("stop before the end reported false")
		}
	}
	c.mu.Lock()
	kept := len(c.afters)
	c.mu.Unlock()
	if kept != 0 {
		t.Fatalf("%d stopped AfterFuncs kept", kept)
	}
	w.stop(c)
}

// TestCommandContextDoneMadeLazily: Done is made on first use, before or
// after the end, and Err is never non-nil while Done is open, however the
// calls interleave with the end.
func TestCommandContextDoneMadeLazily(t *testing.T) {
	var w watchdog
	defer w.close()
	for range 200 {
		c := w.start(context.Background(), time.Hour)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				for c.Err() == nil {
					runtime.Gosched()
				}
				select {
				case <-c.Done():
				default:
					t.Error("Err non-nil while Done is open")
				}
			})
		}
		wg.Go(func() { <-c.Done() })
		w.stop(c)
		wg.Wait()
	}
	// Never asked for during the command: made closed afterwards.
	c := w.start(context.Background(), time.Hour)
	w.stop(c)
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after the end")
	}
}

// TestWatchdogCatchesEveryOverrun: the timer is not re-armed per command,
// yet every command that overruns is ended at its deadline: a later one
// after a long-running earlier one, and a shorter timeout after a longer.
func TestWatchdogCatchesEveryOverrun(t *testing.T) {
	var w watchdog
	defer w.close()
	for _, timeouts := range [][]time.Duration{
		{5 * time.Millisecond, 50 * time.Millisecond}, // the timer, armed for the first, fires early for the second
		{time.Hour, 5 * time.Millisecond},             // a shorter timeout re-arms it
	} {
		first := w.start(context.Background(), timeouts[0])
		w.stop(first)
		second := w.start(context.Background(), timeouts[1])
		select {
		case <-second.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("timeouts %v: the second command's overrun was not caught", timeouts)
		}
		if !errors.Is(second.Err(), context.DeadlineExceeded) {
			t.Fatalf("timeouts %v: %v", timeouts, second.Err())
		}
		w.stop(second)
	}
	// Many commands in a row, each within its time, then one that hangs.
	for range 100 {
		w.stop(w.start(context.Background(), 20*time.Millisecond))
	}
	hung := w.start(context.Background(), 20*time.Millisecond)
	<-hung.Done()
	if !errors.Is(hung.Err(), context.DeadlineExceeded) {
		t.Fatal(hung.Err())
	}
	w.stop(hung)
}

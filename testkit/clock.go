package testkit

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/composable-go/composable"
)

// ManualClock is a [composable.Clock] whose time moves only when a test
// calls [ManualClock.Advance]. Timers armed with After fire, in due order,
// when the clock passes their due time, so delayed effects and saga
// deadlines run deterministically and without sleeping.
//
// Advance fires timers and returns; code woken by a timer runs afterwards,
// so a timer it arms counts from the time Advance reached, not from the
// fired timer's due time. Advance step by step through chained delays.
//
// It is safe for concurrent use.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*manualTimer // sorted by due time, then by arming order
	seq     uint64
	changed chan struct{} // closed and replaced whenever timers are armed
}

type manualTimer struct {
	due time.Time
	seq uint64
	ch  chan time.Time
}

var _ composable.DeadlineClock = (*ManualClock)(nil)

// NewManualClock returns a clock that reads start until advanced.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After arms a timer that fires once the clock has advanced by d. A timer
// with d <= 0 fires at once.
func (c *ManualClock) After(d time.Duration) <-chan time.Time {
	ch, _ := c.NewTimer(d)
	return ch
}

// NewTimer is After with a function that disarms the timer, so that it no
// longer counts as pending. It implements [composable.TimerClock].
func (c *ManualClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arm(c.now.Add(d))
}

// NewTimerAt is NewTimer for a timer that fires once the clock reads due
// or later. It implements [composable.DeadlineClock].
func (c *ManualClock) NewTimerAt(due time.Time) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arm(due)
}

// arm arms a timer for due; the caller holds mu.
func (c *ManualClock) arm(due time.Time) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	if !due.After(c.now) {
		ch <- c.now
		return ch, func() {}
	}
	c.seq++
	t := &manualTimer{due: due, seq: c.seq, ch: ch}
	i, _ := slices.BinarySearchFunc(c.timers, t, func(a, b *manualTimer) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	c.timers = slices.Insert(c.timers, i, t)
	close(c.changed)
	c.changed = make(chan struct{})
	return ch, func() { c.stop(t) }
}

func (c *ManualClock) stop(t *manualTimer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = slices.DeleteFunc(c.timers, func(x *manualTimer) bool { return x == t })
}

// Advance moves the clock forward by d and fires, in due order, every timer
// that falls due. Each fired timer receives its due time.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	target := c.now.Add(d)
	for len(c.timers) > 0 && !c.timers[0].due.After(target) {
		t := c.timers[0]
		c.timers = c.timers[1:]
		c.now = t.due
		t.ch <- t.due
	}
	c.now = target
}

// Pending returns the number of armed timers that have neither fired nor
// been stopped.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n timers are pending, or ctx ends. Use it
// before Advance when a timer is armed by asynchronous code — an effect's Run
// function, or a Delay that follows one in a Concat — so that the test does
// not advance the clock before the timer exists.
func (c *ManualClock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		pending, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if pending >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

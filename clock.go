package composable

import "time"

// Clock is the source of time for reducers (through their environment) and
// for the runtime's [Delay] effects. Production code uses [SystemClock];
// tests use a manual clock (see package testkit) so that time only moves when
// the test says so.
//
// Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives the time once d has elapsed.
	// A duration of zero or less fires immediately.
	After(d time.Duration) <-chan time.Time
}

// TimerClock is a [Clock] whose timers can be stopped. Runtimes use it, when
// the clock offers it, to disarm the timer of a cancelled [Delay].
type TimerClock interface {
	Clock
	// NewTimer is After with a function that stops the timer; stopping a
	// fired or stopped timer does nothing.
	NewTimer(d time.Duration) (c <-chan time.Time, stop func())
}

// DeadlineClock is a [TimerClock] whose timers can be armed for a point in
// time. A runtime that sleeps until a time it computed from Now uses it,
// when the clock offers it, so that time moving between Now and arming the
// timer cannot make it fire late.
type DeadlineClock interface {
	TimerClock
	// NewTimerAt is NewTimer for a timer that fires once the clock reads
	// t or later; at once if it already does.
	NewTimerAt(t time.Time) (c <-chan time.Time, stop func())
}

// SystemClock returns the wall clock. It implements [DeadlineClock].
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

func (c systemClock) NewTimerAt(t time.Time) (<-chan time.Time, func()) {
	return c.NewTimer(time.Until(t))
}

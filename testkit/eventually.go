package testkit

import (
	"log/slog"
	"time"
)

// Eventually polls cond every millisecond until it returns true, and fails
// the test if that does not happen within timeout. Use it to wait for an
// asynchronous outcome — an effect's action reaching an actor — instead of
// sleeping for a guessed duration. It reports whether cond became true.
func Eventually(t TB, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			if cond() {
				return true
			}
			t.Errorf("testkit: condition not met within %v", timeout)
			return false
		}
	}
	return true
}

// QuietLogger returns a logger that discards everything, for components
// whose expected warnings would clutter test output.
func QuietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

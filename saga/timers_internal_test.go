package saga

import (
	"testing"
	"time"
)

// TestEndDisarmsWhatTheSameDecisionArmed: a decision that dispatches a
// command, arms a timer and ends the saga disarms them with everything
// pending before, so no row outlives the instance.
func TestEndDisarmsWhatTheSameDecisionArmed(t *testing.T) {
	due := time.Unix(60, 0)
	before := Instance[struct{}]{ID: "x", Status: Running,
		Timers: map[string]time.Time{"old": due}, Pending: map[string]Pending{"old-step": {Step: "old-step"}}}
	events := []event{
		evDispatched{Command: Pending{Step: "new-step"}, Guard: due},
		evTimerScheduled{Name: "new", Due: due},
		evEnded{Status: Completed},
	}
	after := before.clone(func(s struct{}) struct{} { return s })
	for _, e := range events {
		apply(&Definition[struct{}, any, struct{}]{}, &after, e)
	}
	net := map[string]bool{} // name -> armed after the changes, in order
	for _, tm := range timers(before, after, events) {
		net[tm.Name] = !tm.Cancel
	}
	for _, name := range []string{"timer:old", "pending:old-step", "timer:new", "pending:new-step"} {
		if armed, ok := net[name]; !ok || armed {
			t.Errorf("%s: changed %v, armed %v; want disarmed", name, ok, armed)
		}
	}
}

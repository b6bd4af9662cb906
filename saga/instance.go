package saga

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/composable-go/composable/persistence"
)

// Status is where an instance is in its life.
type Status int

const (
	// NotStarted means no event has started the instance.
	NotStarted Status = iota
	// Running means started, neither ended nor compensating.
	Running
	// Compensating means dispatching compensations before failing.
	Compensating
	// Completed means ended successfully.
	Completed
	// Failed means ended in failure; Reason says why.
	Failed
	// Parked means stopped for a person to look at, after a failure its
	// policy parks on: [Instance].Parked says why. Resume it with
	// [Saga.Resume].
	Parked
)

// String names the status.
func (s Status) String() string {
	names := [...]string{"not started", "running", "compensating", "completed", "failed", "parked"}
	if s < 0 || int(s) >= len(names) {
		return fmt.Sprintf("status %d", int(s))
	}
	return names[s]
}

// Instance is the state of one saga instance: the saga's own state and what
// the framework tracks for it — pending timers and commands, the
// compensations of the steps that succeeded. All of it is rebuilt from the
// instance's events, so it survives restarts.
type Instance[S any] struct {
	ID     string
	Status Status
	Reason string
	State  S
	// Timers are the pending timers, by name, with their due times.
	Timers map[string]time.Time
	// Pending are the dispatched commands awaiting their result, by step.
	Pending map[string]Pending
	// Compensations of the steps that succeeded, oldest first.
	Compensations []Pending
	// Parked is set while the instance is parked.
	Parked *Parking `json:",omitempty"`
}

// Parking says why an instance is parked, and what it does when resumed.
type Parking struct {
	// Reason is the failure that parked the instance.
	Reason string
	// Step is the step whose failure parked it, still pending; empty when
	// the saga's own code failed or its Handle decided to park.
	Step string `json:",omitempty"`
	// From is the status the instance returns to when resumed.
	From Status
	// Since is when it was parked.
	Since time.Time
	// deferred are the inputs that reached it since — the one that failed
	// first — handled in order when it is resumed.
	deferred []input
}

// Deferred returns how many inputs (domain events, outcomes, timer
// firings) wait for the instance to be resumed.
func (p *Parking) Deferred() int { return len(p.deferred) }

// parkingJSON is Parking as snapshots store it, deferred inputs included.
type parkingJSON struct {
	Reason   string
	Step     string `json:",omitempty"`
	From     Status
	Since    time.Time
	Deferred []input `json:",omitempty"`
}

// MarshalJSON encodes p with its deferred inputs, for snapshots.
func (p Parking) MarshalJSON() ([]byte, error) {
	return json.Marshal(parkingJSON{p.Reason, p.Step, p.From, p.Since, p.deferred})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (p *Parking) UnmarshalJSON(data []byte) error {
	var j parkingJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*p = Parking{Reason: j.Reason, Step: j.Step, From: j.From, Since: j.Since, deferred: j.Deferred}
	return nil
}

// Ended reports whether the instance completed or failed.
func (i Instance[S]) Ended() bool { return i.Status == Completed || i.Status == Failed }

// Pending is a dispatched command as the instance records it.
type Pending struct {
	Step          string
	Aggregate     string
	ID            string
	Type          string // the command's registered type
	SchemaVersion int
	Data          []byte
	Retries       int
	OnFailure     FailurePolicy
	Compensation  *Pending `json:",omitempty"`
}

func (i Instance[S]) clone(cloneState func(S) S) Instance[S] {
	i.Timers = maps.Clone(i.Timers)
	i.Pending = maps.Clone(i.Pending)
	i.Compensations = slices.Clone(i.Compensations)
	if i.Parked != nil {
		p := *i.Parked
		p.deferred = slices.Clone(p.deferred)
		i.Parked = &p
	}
	i.State = cloneState(i.State)
	return i
}

// The framework's events, stored in the instance's stream.
type (
	evStarted  struct{}
	evRecorded struct {
		Type          string
		SchemaVersion int
		Data          []byte
	}
	evTimerScheduled struct {
		Name string
		Due  time.Time
	}
	evTimerCancelled struct{ Name string }
	evTimerFired     struct{ Name string }
	evDispatched     struct {
		Command Pending
		// Guard is when the command is dispatched again if no outcome
		// came (zero in events recorded before guards existed).
		Guard time.Time `json:",omitzero"`
	}
	// evResumed records a pending command dispatched again, guarded
	// anew, because no outcome came in time.
	evResumed struct {
		Step  string
		Guard time.Time
	}
	evResulted struct {
		Step              string
		Error             string `json:",omitempty"`
		Rejected          bool   `json:",omitempty"`
		Skipped           bool   `json:",omitempty"`
		Version, Position int64
	}
	evCompensating struct{ Reason string }
	// evParked parks the instance; Input is the input whose handling
	// failed, if it did, to be handled again on resumption.
	evParked struct {
		Reason string
		Step   string `json:",omitempty"`
		From   Status
		Since  time.Time
		Input  *input `json:",omitempty"`
	}
	// evDeferred keeps an input that reached the parked instance.
	evDeferred struct{ Input input }
	// evUnparked resumes the instance: it returns to the status it was
	// parked in. The inputs it deferred are handled in the same decision.
	evUnparked struct{}
	evEnded    struct {
		Status Status
		Reason string `json:",omitempty"`
	}
)

// event is the union of the framework's events.
type event interface{ sagaEvent() }

func (evStarted) sagaEvent()        {}
func (evRecorded) sagaEvent()       {}
func (evTimerScheduled) sagaEvent() {}
func (evTimerCancelled) sagaEvent() {}
func (evTimerFired) sagaEvent()     {}
func (evDispatched) sagaEvent()     {}
func (evResulted) sagaEvent()       {}
func (evResumed) sagaEvent()        {}
func (evCompensating) sagaEvent()   {}
func (evParked) sagaEvent()         {}
func (evDeferred) sagaEvent()       {}
func (evUnparked) sagaEvent()       {}
func (evEnded) sagaEvent()          {}

// inputRegistry encodes an instance's inputs (JSON), for an instance
// that lives on another process of a cluster.
func inputRegistry() *persistence.Registry {
	reg := persistence.NewRegistry()
	if err := persistence.Register[input](reg, "saga.input"); err != nil {
		panic(err) // the framework's own type: a bug here, not input
	}
	return reg
}

// frameworkRegistry encodes the framework's events (JSON).
func frameworkRegistry() *persistence.Registry {
	reg := persistence.NewRegistry()
	for _, err := range []error{
		persistence.Register[evStarted](reg, "saga.started"),
		persistence.Register[evRecorded](reg, "saga.recorded"),
		persistence.Register[evTimerScheduled](reg, "saga.timer-scheduled"),
		persistence.Register[evTimerCancelled](reg, "saga.timer-cancelled"),
		persistence.Register[evTimerFired](reg, "saga.timer-fired"),
		persistence.Register[evDispatched](reg, "saga.dispatched"),
		persistence.Register[evResulted](reg, "saga.resulted"),
		persistence.Register[evResumed](reg, "saga.resumed"),
		persistence.Register[evCompensating](reg, "saga.compensating"),
		persistence.Register[evEnded](reg, "saga.ended"),
		persistence.Register[evParked](reg, "saga.parked"),
		persistence.Register[evDeferred](reg, "saga.deferred"),
		persistence.Register[evUnparked](reg, "saga.unparked"),
	} {
		if err != nil {
			panic(err) // the framework's own types: a bug here, not input
		}
	}
	return reg
}

// apply evolves an instance by one framework event. User events are
// decoded with the definition's registry and applied with its Apply.
func apply[S, E, Env any](def *Definition[S, E, Env], i *Instance[S], e event) {
	switch e := e.(type) {
	case evStarted:
		i.Status = Running
	case evRecorded:
		ev, err := persistence.Decode[E](def.Events, persistence.EventData{Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data})
		if err != nil {
			panic(err) // the aggregate runtime reports it as a corrupt stream
		}
		def.Apply(&i.State, ev)
	case evTimerScheduled:
		if i.Timers == nil {
			i.Timers = map[string]time.Time{}
		}
		i.Timers[e.Name] = e.Due
	case evTimerCancelled:
		delete(i.Timers, e.Name)
	case evTimerFired:
		delete(i.Timers, e.Name)
	case evDispatched:
		if i.Pending == nil {
			i.Pending = map[string]Pending{}
		}
		i.Pending[e.Command.Step] = e.Command
	case evResulted:
		p, ok := i.Pending[e.Step]
		delete(i.Pending, e.Step)
		if !ok {
			return
		}
		if n := len(i.Compensations); i.Status == Compensating && n > 0 && CompensationStep(i.Compensations[n-1].Step) == e.Step {
			i.Compensations = i.Compensations[:n-1] // a compensation done
			return
		}
		// A step that succeeded — even one that finished late, during the
		// compensation — is undone with the others.
		if e.Error == "" && !e.Skipped && p.Compensation != nil {
			c := *p.Compensation
			c.Step = p.Step // the stack remembers the step it undoes
			i.Compensations = append(i.Compensations, c)
		}
	case evCompensating:
		i.Status, i.Reason = Compensating, e.Reason
	case evParked:
		i.Status = Parked
		i.Parked = &Parking{Reason: e.Reason, Step: e.Step, From: e.From, Since: e.Since}
		if e.Input != nil {
			i.Parked.deferred = []input{*e.Input}
			if e.Input.Timer != "" {
				delete(i.Timers, e.Input.Timer) // fired: it waits among the inputs
			}
		}
	case evDeferred:
		if i.Parked != nil {
			i.Parked.deferred = append(i.Parked.deferred, e.Input)
		}
		if e.Input.Timer != "" {
			delete(i.Timers, e.Input.Timer) // fired: it waits among the inputs
		}
	case evUnparked:
		if i.Parked != nil {
			i.Status, i.Parked = i.Parked.From, nil
		}
	case evEnded:
		i.Status, i.Reason = e.Status, e.Reason
		i.Timers, i.Pending, i.Compensations = nil, nil, nil
	}
}

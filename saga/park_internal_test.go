package saga

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// TestParkingSurvivesASnapshot: a parked instance's deferred inputs are
// part of its snapshot, though they are not exported.
func TestParkingSurvivesASnapshot(t *testing.T) {
	due := time.Unix(60, 0).UTC()
	in := Instance[int]{ID: "x", Status: Parked, State: 7, Parked: &Parking{
		Reason: "step s failed: down", Step: "s", From: Running, Since: due,
		deferred: []input{
			{Event: &persistence.RecordedEvent{EventData: persistence.EventData{ID: "e1", Type: "t", Data: []byte(`{}`)}}, Mode: Continue},
			{Timer: "deadline", Due: due},
			{Result: &evResulted{Step: "other", Error: "refused", Rejected: true}},
		},
	}}
	codec := persistence.SnapshotCodec[Instance[int]]{SchemaVersion: 1, Codec: persistence.JSONCodec{}}
	data, err := codec.Codec.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Instance[int]
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	p := out.Parked
	if p == nil || p.Reason != in.Parked.Reason || p.Step != "s" || p.From != Running || !p.Since.Equal(due) || p.Deferred() != 3 {
		t.Fatalf("parking after a round trip: %+v (%d deferred)", p, p.Deferred())
	}
	if d := p.deferred; d[0].Event.ID != "e1" || d[0].Mode != Continue || d[1].Timer != "deadline" || !d[1].Due.Equal(due) ||
		d[2].Result.Step != "other" || !d[2].Result.Rejected {
		t.Fatalf("deferred inputs after a round trip: %+v", d)
	}
	// A clone does not share them.
	c := out.clone(func(s int) int { return s })
	c.Parked.deferred[0].Timer = "changed"
	if out.Parked.deferred[0].Timer != "" {
		t.Fatal("a clone shares the deferred inputs")
	}
}

type holdStart struct{ ID string }
type holdPaid struct{ ID string }
type holdNote struct{ Text string }

// holdDefinition starts, arms a deadline and parks at once; a payment
// cancels the deadline, which otherwise notes it was late.
func holdDefinition() Definition[[]string, holdNote, struct{}] {
	events := persistence.NewRegistry()
	for _, err := range []error{
		persistence.Register[holdStart](events, "hold.start"),
		persistence.Register[holdPaid](events, "hold.paid"),
		persistence.Register[holdNote](events, "hold.note"),
	} {
		if err != nil {
			panic(err)
		}
	}
	return Definition[[]string, holdNote, struct{}]{
		Type: "hold", Events: events, Commands: persistence.NewRegistry(),
		Route: func(e any, _ map[string]string) Route {
			switch e := e.(type) {
			case holdStart:
				return Route{Mode: Start, ID: e.ID}
			case holdPaid:
				return Route{Mode: Continue, ID: e.ID}
			}
			return Route{}
		},
		Handle: func(_ []string, in Input, _ struct{}) (Decision[holdNote], error) {
			switch in.Event.(type) {
			case holdStart:
				return Decision[holdNote]{Schedule: []Timer{{Name: "deadline", After: time.Minute}}, Park: "hold"}, nil
			case holdPaid:
				return Decision[holdNote]{Events: []holdNote{{"paid"}}, Cancel: []string{"deadline"}}, nil
			}
			if in.Timer == "deadline" {
				return Decision[holdNote]{Events: []holdNote{{"late"}}}, nil
			}
			return Decision[holdNote]{}, nil
		},
		Apply: func(s *[]string, e holdNote) { *s = append(*s, e.Text) },
	}
}

type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                         { return c.now }
func (c *stepClock) After(d time.Duration) <-chan time.Time { return make(chan time.Time) }

// TestResumeHandlesDeferredInputsInTheirOrder: a payment deferred before
// the deadline's firing cancels it on Resume — as it would have without
// the parking — so the deadline never reaches Handle.
func TestResumeHandlesDeferredInputsInTheirOrder(t *testing.T) {
	clock := &stepClock{now: time.Unix(0, 0)}
	m, err := NewMachine(holdDefinition(), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, _, err := m.Event(m.New("h"), holdStart{"h"}, nil)
	if err != nil || inst.Status != Parked {
		t.Fatalf("start: %+v, %v", inst, err)
	}
	if inst, _, err = m.Event(inst, holdPaid{"h"}, nil); err != nil {
		t.Fatal(err)
	}
	clock.now = clock.now.Add(time.Minute)
	if inst, _, err = m.Timer(inst, "deadline"); err != nil || inst.Parked.Deferred() != 2 {
		t.Fatalf("the deadline while parked: %v, %d deferred", err, inst.Parked.Deferred())
	}
	if _, ok := inst.Timers["deadline"]; ok {
		t.Fatal("a deferred firing is still a pending timer")
	}
	inst, _, err = m.Resume(inst)
	if err != nil || inst.Status != Running || len(inst.State) != 1 || inst.State[0] != "paid" || len(inst.Timers) != 0 {
		t.Fatalf("resumed: %+v, %v; want the payment alone handled", inst, err)
	}
}

// TestParkingDecisionDispatchesNothing: commands a parking decision
// dispatches stay pending, unsent, until Resume.
func TestParkingDecisionDispatchesNothing(t *testing.T) {
	def := holdDefinition()
	def.Commands = persistence.NewRegistry()
	if err := persistence.Register[holdNote](def.Commands, "hold.command"); err != nil {
		t.Fatal(err)
	}
	def.Handle = func(_ []string, in Input, _ struct{}) (Decision[holdNote], error) {
		if _, ok := in.Event.(holdStart); ok {
			return Decision[holdNote]{Dispatch: []Command{{Step: "s", Aggregate: "a", ID: "1", Command: holdNote{"x"}}}, Park: "hold"}, nil
		}
		return Decision[holdNote]{}, nil
	}
	m, err := NewMachine(def, &stepClock{now: time.Unix(0, 0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, out, err := m.Event(m.New("h"), holdStart{"h"}, nil)
	if err != nil || inst.Status != Parked || len(out.Dispatched) != 0 || len(inst.Pending) != 1 {
		t.Fatalf("parking decision: %+v dispatched %v, %v", inst, out.Dispatched, err)
	}
	inst, out, err = m.Resume(inst)
	if err != nil || inst.Status != Running || len(out.Dispatched) != 1 || out.Dispatched[0].Step != "s" {
		t.Fatalf("resumed: %+v dispatched %v, %v", inst, out.Dispatched, err)
	}
}

// TestInputsCrossProcesses: an instance's inputs round-trip through the
// Commands registry a clustered runtime sends them with.
func TestInputsCrossProcesses(t *testing.T) {
	due := time.Unix(60, 0).UTC()
	for _, in := range []input{
		{Event: &persistence.RecordedEvent{EventData: persistence.EventData{ID: "e1", Type: "t", Data: []byte(`{"a":1}`)}, StreamID: "s", Version: 2}, Mode: Start},
		{Timer: "deadline", Due: due},
		{Result: &evResulted{Step: "debit", Error: "closed", Rejected: true, Version: 3}},
		{Resume: "debit"}, {Unpark: true}, {Upgrade: true},
	} {
		data, err := inputRegistry().Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := persistence.Decode[input](inputRegistry(), data)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(in)
		b, _ := json.Marshal(out)
		if string(a) != string(b) {
			t.Fatalf("input %s came back as %s", a, b)
		}
	}
}

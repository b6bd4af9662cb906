package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/testkit"
)

// Every test must stop every goroutine it started: run's actor system and
// runtime included.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scenario is the given / when / then driver for the to-do list.
type scenario = testkit.Scenario[List, Command, Event, Env]

func definition(t *testing.T) aggregate.Definition[List, Command, Event, Env] {
	t.Helper()
	def, err := newDefinition()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// TestRules states every business rule as given (events already stored),
// when (a command), then (the events it records, or the error rejecting
// it, and the state afterwards). testkit.Both runs each case twice: on the
// pure functions, and through a live aggregate actor over an in-memory
// store, so the rules and the runtime are checked together.
//
// Scenarios are exhaustive: a When whose outcome is not asserted fails.
func TestRules(t *testing.T) {
	milk := ItemAdded{ItemID: 1, Title: "milk"}
	bread := ItemAdded{ItemID: 2, Title: "bread"}
	tests := []struct {
		name  string
		given []Event
		steps func(sc *scenario)
	}{
		{"adding to a new list records the first item", nil, func(sc *scenario) {
			sc.When(AddItem{Title: "milk"}).Then(milk).ThenState(func(l *List) {
				l.Items = []Item{{ID: 1, Title: "milk"}}
				l.LastID = 1
			})
		}},
		{"titles are trimmed", nil, func(sc *scenario) {
			sc.When(AddItem{Title: "  milk\t"}).Then(milk)
		}},
		{"a blank title is rejected and changes nothing", []Event{milk}, func(sc *scenario) {
			sc.When(AddItem{Title: " "}).ThenError(ErrEmptyTitle).ThenState(func(*List) {})
		}},
		{"every rejection also matches aggregate.ErrRejected", nil, func(sc *scenario) {
			sc.When(AddItem{}).ThenError(aggregate.ErrRejected)
		}},
		{"ids count up and are not reused after a removal", []Event{milk, bread, ItemRemoved{ItemID: 2}}, func(sc *scenario) {
			sc.When(AddItem{Title: "eggs"}).Then(ItemAdded{ItemID: 3, Title: "eggs"})
		}},
		{"completing an item marks it done", []Event{milk, bread}, func(sc *scenario) {
			sc.When(CompleteItem{ItemID: 2}).Then(ItemCompleted{ItemID: 2}).ThenState(func(l *List) {
				l.Items[1].Done = true
			})
		}},
		{"completing twice is rejected", []Event{milk, ItemCompleted{ItemID: 1}}, func(sc *scenario) {
			sc.When(CompleteItem{ItemID: 1}).ThenError(ErrAlreadyCompleted).ThenState(func(*List) {})
		}},
		{"completing an unknown item is rejected", []Event{milk}, func(sc *scenario) {
			sc.When(CompleteItem{ItemID: 2}).ThenError(ErrUnknownItem)
		}},
		{"removing an item takes it off the list", []Event{milk, bread}, func(sc *scenario) {
			sc.When(RemoveItem{ItemID: 1}).Then(ItemRemoved{ItemID: 1}).ThenState(func(l *List) {
				l.Items = l.Items[1:]
			})
		}},
		{"removing an unknown item is rejected", nil, func(sc *scenario) {
			sc.When(RemoveItem{ItemID: 1}).ThenError(ErrUnknownItem)
		}},
		{"a removed item is unknown", []Event{milk, ItemRemoved{ItemID: 1}}, func(sc *scenario) {
			sc.When(CompleteItem{ItemID: 1}).ThenError(ErrUnknownItem)
			sc.When(RemoveItem{ItemID: 1}).ThenError(ErrUnknownItem)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testkit.Both(t, definition(t), tt.given, tt.steps)
		})
	}
}

// TestRunPrintsTheSession runs main's session and checks its whole output:
// the demo is deterministic (an in-memory store, no clocks), so any change
// in behaviour shows here.
func TestRunPrintsTheSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `groceries  AddItem{Title:"milk"}              -> ItemAdded{ItemID:1, Title:"milk"} (version 1)
groceries  AddItem{Title:"bread"}             -> ItemAdded{ItemID:2, Title:"bread"} (version 2)
groceries  AddItem{Title:"   "}               -> rejected: title is empty
groceries  CompleteItem{ItemID:1}             -> ItemCompleted{ItemID:1} (version 3)
groceries  CompleteItem{ItemID:1}             -> rejected: item 1: already completed
groceries  RemoveItem{ItemID:2}               -> ItemRemoved{ItemID:2} (version 4)
groceries  RemoveItem{ItemID:2}               -> rejected: item 2: no such item
chores     AddItem{Title:"water the plants"}  -> ItemAdded{ItemID:1, Title:"water the plants"} (version 1)
groceries  AddItem{Title:"eggs"}              -> ItemAdded{ItemID:3, Title:"eggs"} (version 5)

groceries now (version 5):
  [x] 1 milk
  [ ] 3 eggs

stored in stream "todo/groceries":
  1 todo.item_added      {"item_id":1,"title":"milk"}
  2 todo.item_added      {"item_id":2,"title":"bread"}
  3 todo.item_completed  {"item_id":1}
  4 todo.item_removed    {"item_id":2}
  5 todo.item_added      {"item_id":3,"title":"eggs"}
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output differs (-want +got):\n%s", diff)
	}
}

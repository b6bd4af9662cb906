package main

// This file is the whole business logic of a to-do list, written as an
// event-sourced aggregate. Nothing here does I/O, starts goroutines or knows
// about storage: it is plain data and two pure functions, which is what
// makes it easy to test (see todo_test.go) and safe to replay.
//
// An aggregate has three kinds of data:
//
//   - State (List): what one to-do list looks like now.
//   - Commands (AddItem, CompleteItem, RemoveItem): what a user asks for.
//     A command may be rejected.
//   - Events (ItemAdded, ItemCompleted, ItemRemoved): what happened. Events
//     are facts, stored forever; they are never rejected.
//
// and two functions that connect them:
//
//   - handle(state, command) decides: it checks the business rules and
//     returns the events to record, or an error that rejects the command.
//   - apply(&state, event) changes the state by one event.
//
// The framework stores only the events. When a list is needed again (after
// a restart, say), its state is rebuilt by applying its stored events in
// order; that is why the state must change only in apply.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// List is the state of one to-do list. Each list is its own aggregate,
// found by an id chosen by the caller ("groceries"); lists never see each
// other's items.
type List struct {
	// Items are the list's items in the order they were added.
	Items []Item
	// LastID is the id given to the most recently added item. Ids count up
	// from 1 and are never reused, even after a removal.
	LastID int
}

// Item is one entry of a list.
type Item struct {
	ID    int
	Title string
	Done  bool
}

// find returns the item with the given id.
func (l List) find(id int) (Item, bool) {
	i := slices.IndexFunc(l.Items, func(it Item) bool { return it.ID == id })
	if i < 0 {
		return Item{}, false
	}
	return l.Items[i], true
}

// Command is what a user can ask a list to do. The unexported method closes
// the set: only the types below are commands, and the compiler says so when
// something else is sent.
type Command interface{ isCommand() }

type (
	// AddItem adds an item with a title, which must not be blank.
	AddItem struct{ Title string }
	// CompleteItem marks an item done; it must exist and not be done yet.
	CompleteItem struct{ ItemID int }
	// RemoveItem deletes an item; it must exist.
	RemoveItem struct{ ItemID int }
)

func (AddItem) isCommand()      {}
func (CompleteItem) isCommand() {}
func (RemoveItem) isCommand()   {}

// Event is what can happen to a list. Events are stored as JSON, so their
// fields carry json tags: the tags, not the Go names, are the stored schema,
// and fields can be renamed in Go without breaking old events.
type Event interface{ isEvent() }

type (
	// ItemAdded records a new item. The id is chosen by handle, from the
	// state, so that replaying the events always gives the same ids.
	ItemAdded struct {
		ItemID int    `json:"item_id"`
		Title  string `json:"title"`
	}
	// ItemCompleted records that an item was marked done.
	ItemCompleted struct {
		ItemID int `json:"item_id"`
	}
	// ItemRemoved records that an item was deleted.
	ItemRemoved struct {
		ItemID int `json:"item_id"`
	}
)

func (ItemAdded) isEvent()     {}
func (ItemCompleted) isEvent() {}
func (ItemRemoved) isEvent()   {}

// The business rules. A rejection is an ordinary error returned by handle;
// callers test for it with errors.Is, whether they ran handle directly (as
// the pure tests do) or sent a command through the runtime.
var (
	// ErrEmptyTitle rejects AddItem with a blank title.
	ErrEmptyTitle = errors.New("title is empty")
	// ErrUnknownItem rejects CompleteItem and RemoveItem for an item that
	// is not on the list (never added, or removed).
	ErrUnknownItem = errors.New("no such item")
	// ErrAlreadyCompleted rejects completing an item a second time.
	ErrAlreadyCompleted = errors.New("already completed")
)

// Env holds the dependencies handle may use: clocks, id generators,
// read-only services. A to-do list needs none, so it is empty.
type Env struct{}

// decision is what handle returns: the events to record (and, in fancier
// aggregates, follow-up commands). A short alias keeps signatures readable.
type decision = aggregate.Decision[Command, Event]

// handle checks a command against the current state and decides what
// happens. It must be deterministic — same state and command, same answer —
// so it uses nothing but its arguments. It receives a copy of the state;
// changing it has no effect (only apply changes state).
func handle(l List, cmd Command, _ Env) (decision, error) {
	switch c := cmd.(type) {
	case AddItem:
		title := strings.TrimSpace(c.Title)
		if title == "" {
			return decision{}, ErrEmptyTitle
		}
		// Emit needs both type parameters spelled out: Go cannot infer the
		// command type, and would infer ItemAdded rather than Event.
		return aggregate.Emit[Command, Event](ItemAdded{ItemID: l.LastID + 1, Title: title}), nil
	case CompleteItem:
		item, ok := l.find(c.ItemID)
		switch {
		case !ok:
			return decision{}, fmt.Errorf("item %d: %w", c.ItemID, ErrUnknownItem)
		case item.Done:
			return decision{}, fmt.Errorf("item %d: %w", c.ItemID, ErrAlreadyCompleted)
		}
		return aggregate.Emit[Command, Event](ItemCompleted{ItemID: item.ID}), nil
	case RemoveItem:
		item, ok := l.find(c.ItemID)
		if !ok {
			return decision{}, fmt.Errorf("item %d: %w", c.ItemID, ErrUnknownItem)
		}
		return aggregate.Emit[Command, Event](ItemRemoved{ItemID: item.ID}), nil
	}
	// Unreachable with the closed Command interface, but a nil command
	// could still get here: reject it rather than panic.
	return decision{}, fmt.Errorf("unknown command %T", cmd)
}

// apply changes the state by one event. Events are facts that already
// happened, so apply never fails and never checks rules: it just records.
func apply(l *List, event Event) {
	switch e := event.(type) {
	case ItemAdded:
		l.Items = append(l.Items, Item{ID: e.ItemID, Title: e.Title})
		l.LastID = e.ItemID
	case ItemCompleted:
		for i := range l.Items {
			if l.Items[i].ID == e.ItemID {
				l.Items[i].Done = true
			}
		}
	case ItemRemoved:
		l.Items = slices.DeleteFunc(l.Items, func(it Item) bool { return it.ID == e.ItemID })
	}
}

// cloneList copies a state without sharing memory. The runtime applies new
// events to a copy first and keeps the copy only once the events are
// stored; apply changes Items in place, so a plain struct copy (the
// default) would let a failed write leak into the live state.
func cloneList(l List) List {
	l.Items = slices.Clone(l.Items)
	return l
}

// newDefinition ties the pieces together. The runtime hosts the definition;
// the tests run it directly.
func newDefinition() (aggregate.Definition[List, Command, Event, Env], error) {
	// The registry names each event type for storage. The names are part
	// of the stored data, like the json tags: never change them.
	events := persistence.NewRegistry()
	err := errors.Join(
		persistence.Register[ItemAdded](events, "todo.item_added"),
		persistence.Register[ItemCompleted](events, "todo.item_completed"),
		persistence.Register[ItemRemoved](events, "todo.item_removed"),
	)
	if err != nil {
		return aggregate.Definition[List, Command, Event, Env]{}, fmt.Errorf("register todo events: %w", err)
	}
	return aggregate.Definition[List, Command, Event, Env]{
		// Type names the aggregate type: list "groceries" is stored in the
		// stream "todo/groceries".
		Type:   "todo",
		Handle: handle,
		Apply:  apply,
		Events: events,
		// Snapshots save the whole state now and then (every 100 events by
		// default) so that a long list need not replay from the start. The
		// zero codec stores the state as JSON; bump SchemaVersion whenever
		// List's encoding changes, and old snapshots are ignored.
		Snapshots: persistence.SnapshotCodec[List]{SchemaVersion: 1},
		Clone:     cloneList,
	}, nil
}

// Command todo is the first example to read: a to-do list written as an
// event-sourced aggregate (todo.go), run by the aggregate runtime over an
// in-memory event store. It sends a short, scripted series of commands and
// prints what happens to each — accepted with its events, or rejected by a
// business rule — then the list's state and the events that were stored.
//
//	go run ./examples/todo
//
// Read todo.go first (the business logic), then this file (how it runs),
// then todo_test.go (how it is tested). examples/order-processing goes on
// to PostgreSQL, restarts and idempotent retries.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence/memory"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "todo:", err)
		os.Exit(1)
	}
}

// step is one scripted command: which list it goes to, and what it asks.
type step struct {
	list string
	cmd  Command
}

// script is the session main plays. Lists are created on first use; there
// is no "create list" command.
var script = []step{
	{"groceries", AddItem{Title: "milk"}},
	{"groceries", AddItem{Title: "bread"}},
	{"groceries", AddItem{Title: "   "}}, // rejected: blank title
	{"groceries", CompleteItem{ItemID: 1}},
	{"groceries", CompleteItem{ItemID: 1}}, // rejected: already completed
	{"groceries", RemoveItem{ItemID: 2}},
	{"groceries", RemoveItem{ItemID: 2}}, // rejected: no longer there
	{"chores", AddItem{Title: "water the plants"}},
	{"groceries", AddItem{Title: "eggs"}},
}

// run plays the script and writes what happens to out. It returns an error
// only when something other than a business rule fails.
func run(ctx context.Context, out io.Writer) error {
	def, err := newDefinition()
	if err != nil {
		return err
	}

	// Three pieces run an aggregate:
	//   - an event store, where events are kept (here in memory; see
	//     examples/order-processing for PostgreSQL);
	//   - an actor system, which runs one actor per live list, so that the
	//     commands of one list are handled one at a time, in order;
	//   - a runtime, which connects the two and hosts aggregate types.
	// They are closed in reverse order: the runtime first, which waits for
	// commands in flight, then the actor system.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store := memory.New()
	sys := actor.NewSystem(actor.WithLogger(logger))
	defer sys.Close()
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(logger))
	defer rt.Close()

	// Register returns a typed handle: lists.Send accepts only Commands and
	// returns the List state and Events, no type assertions needed.
	lists, err := aggregate.Register(rt, def, aggregate.Options{})
	if err != nil {
		return err
	}

	for _, s := range script {
		// Send returns once the events are stored and applied, or once the
		// command was rejected — in which case nothing was stored.
		res, err := lists.Send(ctx, s.list, s.cmd)
		switch {
		case errors.Is(err, aggregate.ErrRejected):
			fmt.Fprintf(out, "%-10s %-34s -> rejected: %v\n", s.list, describe(s.cmd), rejection(err))
		case err != nil:
			return fmt.Errorf("%s %s: %w", s.list, describe(s.cmd), err)
		default:
			for _, e := range res.Events {
				fmt.Fprintf(out, "%-10s %-34s -> %s (version %d)\n", s.list, describe(s.cmd), describe(e), res.Version)
			}
		}
	}

	// State asks a list for its current state without changing it.
	res, err := lists.State(ctx, "groceries")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\ngroceries now (version %d):\n", res.Version)
	for _, it := range res.State.Items {
		box := "[ ]"
		if it.Done {
			box = "[x]"
		}
		fmt.Fprintf(out, "  %s %d %s\n", box, it.ID, it.Title)
	}

	// The store holds the events, not the state: this is all that survives
	// (in a durable store), and the state above is rebuilt from it.
	stored, err := store.Load(ctx, lists.Stream("groceries"), 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nstored in stream %q:\n", lists.Stream("groceries"))
	for _, e := range stored {
		fmt.Fprintf(out, "  %d %-20s %s\n", e.Version, e.Type, e.Data)
	}
	return nil
}

// rejection returns the business rule that rejected a command: the error
// the handler returned, without the runtime's "aggregate todo/x: rejected"
// prefix.
func rejection(err error) error {
	var rej *aggregate.RejectedError
	if errors.As(err, &rej) {
		return rej.Err
	}
	return err
}

// describe prints a command or event as Go syntax without the package
// name: AddItem{Title:"milk"}.
func describe(v any) string {
	return strings.ReplaceAll(fmt.Sprintf("%#v", v), "main.", "")
}

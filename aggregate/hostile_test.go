package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// Hostile input: a command the store refuses, or an id no stream can be
// named after, is the caller's fault — refused with a typed error at once
// — and never makes the aggregate unavailable to anyone else.

type board struct{ Notes int }

type (
	pin    struct{ Text string }
	pinned struct{ Text string }
)

func boardDefinition() aggregate.Definition[board, pin, pinned, struct{}] {
	reg := persistence.NewRegistry()
	if err := persistence.Register[pinned](reg, "board.pinned"); err != nil {
		panic(err)
	}
	return aggregate.Definition[board, pin, pinned, struct{}]{
		Type: "board",
		Handle: func(_ board, c pin, _ struct{}) (aggregate.Decision[pin, pinned], error) {
			return aggregate.Emit[pin](pinned(c)), nil
		},
		Apply:  func(b *board, _ pinned) { b.Notes++ },
		Events: reg,
	}
}

func newBoards(t *testing.T, store persistence.EventStore) *aggregate.Type[board, pin, pinned, struct{}] {
	t.Helper()
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, store, aggregate.WithClock(testkit.NewManualClock(time.Unix(0, 0))), aggregate.WithLogger(quiet()))
	t.Cleanup(func() { _ = rt.Close() })
	boards, err := aggregate.Register(rt, boardDefinition(), aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return boards
}

// TestOversizedCommandLeavesTheAggregateAvailable: an event over the
// store's size limit is refused as an invalid decision — not an outage —
// and the next command, from anyone, is handled at once (the manual clock
// never moves: there is no back-off to wait out). On memory and
// PostgreSQL.
func TestOversizedCommandLeavesTheAggregateAvailable(t *testing.T) {
	pool := pgtest.Pool(t)
	for name, store := range map[string]persistence.EventStore{
		"memory":   memory.New(),
		"postgres": pgStore(t, pool, pgtest.Schema(t, pool, "agg_hostile")),
	} {
		t.Run(name, func(t *testing.T) {
			boards := newBoards(t, store)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for round := range 3 {
				_, err := boards.Send(ctx, "b1", pin{Text: strings.Repeat("x", persistence.DefaultMaxEventSize+1)})
				if !errors.Is(err, aggregate.ErrInvalidDecision) || !errors.Is(err, persistence.ErrEventTooLarge) || errors.Is(err, aggregate.ErrUnavailable) {
					t.Fatalf("round %d: oversized command: %v, want ErrInvalidDecision and ErrEventTooLarge, not ErrUnavailable", round, err)
				}
				res, err := boards.Send(ctx, "b1", pin{Text: fmt.Sprint("fine ", round)})
				if err != nil || res.State.Notes != round+1 || res.Version != int64(round+1) {
					t.Fatalf("round %d: the next command: %+v, %v", round, res, err)
				}
			}
		})
	}
}

// TestInvalidIDsAreRefusedAtTheDoor: ids no stream can be named after are
// refused before any actor is spawned, with ErrInvalidID (an
// ErrInvalidInput), and the error quotes a bounded prefix of the id.
func TestInvalidIDsAreRefusedAtTheDoor(t *testing.T) {
	boards := newBoards(t, memory.New())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"", "a\x00b", "a\xffb", strings.Repeat("i", persistence.MaxIDLength)} {
		_, err := boards.Send(ctx, id, pin{Text: "x"})
		if !errors.Is(err, aggregate.ErrInvalidID) || !errors.Is(err, persistence.ErrInvalidInput) {
			t.Fatalf("Send(%.20q): %v, want ErrInvalidID", id, err)
		}
		if len(err.Error()) > 256 {
			t.Fatalf("the error quotes %d bytes", len(err.Error()))
		}
		if _, err := boards.State(ctx, id); !errors.Is(err, aggregate.ErrInvalidID) {
			t.Fatalf("State(%.20q): %v, want ErrInvalidID", id, err)
		}
	}
	if n := boards.Live(); n != 0 {
		t.Fatalf("%d aggregates live after refused ids", n)
	}
	// The longest id that fits is fine.
	id := strings.Repeat("i", persistence.MaxIDLength-len("board/"))
	if _, err := boards.Send(ctx, id, pin{Text: "x"}); err != nil {
		t.Fatalf("an id at the limit: %v", err)
	}
}

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

// TestReservedMetadataCannotBeSpoofed: metadata may not set the command id
// (or type) deduplication trusts: a spoofed command-id is refused, writes
// nothing, and the genuine command with that id runs — also after a
// restart, when deduplication reads the ids back from the stream.
func TestReservedMetadataCannotBeSpoofed(t *testing.T) {
	store := memory.New()
	boards := newBoards(t, store)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, key := range []string{persistence.MetadataCommandID, persistence.MetadataCommandType} {
		_, err := boards.Send(ctx, "b1", pin{Text: "spoof"}, aggregate.WithMetadata(map[string]string{key: "saga/pay/1/charge"}))
		if !errors.Is(err, persistence.ErrReservedMetadata) || !errors.Is(err, persistence.ErrInvalidInput) {
			t.Fatalf("metadata %q: %v, want ErrReservedMetadata", key, err)
		}
	}
	if _, err := store.Load(ctx, "board/b1", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("a refused command wrote events: %v", err)
	}
	// Correlation and causation ids are the caller's to pass on.
	md := map[string]string{persistence.MetadataCorrelationID: "c1", persistence.MetadataCausationID: "x"}
	if _, err := boards.Send(ctx, "b1", pin{Text: "ok"}, aggregate.WithMetadata(md)); err != nil {
		t.Fatal(err)
	}
	fresh := newBoards(t, store) // a restart: dedup rebuilt from the stream
	res, err := fresh.Send(ctx, "b1", pin{Text: "genuine"}, aggregate.WithCommandID("saga/pay/1/charge"))
	if err != nil || res.Duplicate || res.State.Notes != 2 {
		t.Fatalf("the genuine command: %+v, %v", res, err)
	}
}

// TestMetadataCountsTowardsTheEventSize: an event whose metadata makes it
// larger than the limit is refused like one whose data does.
func TestMetadataCountsTowardsTheEventSize(t *testing.T) {
	boards := newBoards(t, memory.New())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := map[string]string{"blob": strings.Repeat("m", persistence.DefaultMaxEventSize)}
	_, err := boards.Send(ctx, "b1", pin{Text: "small"}, aggregate.WithMetadata(md))
	if !errors.Is(err, persistence.ErrEventTooLarge) || !errors.Is(err, aggregate.ErrInvalidDecision) {
		t.Fatalf("oversized metadata: %v, want ErrEventTooLarge", err)
	}
	if _, err := boards.Send(ctx, "b1", pin{Text: "next"}); err != nil {
		t.Fatalf("the next command: %v", err)
	}
}

// TestOverlongTimerNameLeavesTheAggregateAvailable: a timer name no store
// can index (PostgreSQL would fail the whole batch with "index row size
// exceeds the maximum") is refused as an invalid decision, with no
// back-off: the next command goes through at once. On memory and
// PostgreSQL.
func TestOverlongTimerNameLeavesTheAggregateAvailable(t *testing.T) {
	pool := pgtest.Pool(t)
	for name, store := range map[string]persistence.EventStore{
		"memory":   memory.New(),
		"postgres": pgStore(t, pool, pgtest.Schema(t, pool, "agg_timer_name")),
	} {
		t.Run(name, func(t *testing.T) {
			f := newAlarms(t, store, testkit.NewManualClock(epoch), aggregate.Options{})
			ctx := ctxT(t)
			long := strings.Repeat("n", 8<<10)
			_, err := f.alarms.Send(ctx, "a1", setAlarm{Name: long, At: epoch.Add(time.Minute)})
			if !errors.Is(err, aggregate.ErrInvalidDecision) || !errors.Is(err, persistence.ErrTooLong) || errors.Is(err, aggregate.ErrUnavailable) {
				t.Fatalf("an overlong timer name: %v, want ErrInvalidDecision and ErrTooLong", err)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("the error quotes %d bytes", len(err.Error()))
			}
			if _, err := f.alarms.Send(ctx, "a1", setAlarm{Name: "wake", At: epoch.Add(time.Minute)}); err != nil {
				t.Fatalf("the next command: %v", err)
			}
		})
	}
}

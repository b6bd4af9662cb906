package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type scenario = testkit.Scenario[Order, Command, Event, Env]

var (
	adaLines = []Line{{SKU: "book", Quantity: 2}, {SKU: "pen", Quantity: 5}}
	placeAda = PlaceOrder{Customer: "ada", Lines: adaLines}
	placed   = OrderPlaced{Customer: "ada", Lines: adaLines}
)

func definition(t *testing.T) aggregate.Definition[Order, Command, Event, Env] {
	t.Helper()
	def, err := newDefinition()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRules checks every business rule on the pure functions and through a
// live aggregate actor (testkit.Both).
func TestRules(t *testing.T) {
	unchanged := func(*Order) {}
	tests := []struct {
		name  string
		given []Event
		steps func(sc *scenario)
	}{
		{"placing records the order", nil, func(sc *scenario) {
			sc.When(placeAda).Then(placed).ThenState(func(o *Order) {
				o.Status, o.Customer, o.Lines = StatusPlaced, "ada", adaLines
			})
		}},
		{"placing needs a customer", nil, func(sc *scenario) {
			sc.When(PlaceOrder{Customer: "  ", Lines: adaLines}).ThenError(ErrNoCustomer).ThenState(unchanged)
		}},
		{"placing needs lines", nil, func(sc *scenario) {
			sc.When(PlaceOrder{Customer: "ada"}).ThenError(ErrNoLines).ThenState(unchanged)
		}},
		{"quantities must be positive", nil, func(sc *scenario) {
			sc.When(PlaceOrder{Customer: "ada", Lines: []Line{{SKU: "pen", Quantity: 1}, {SKU: "ink", Quantity: 0}}}).ThenError(ErrBadQuantity)
			sc.When(PlaceOrder{Customer: "ada", Lines: []Line{{SKU: "pen", Quantity: -3}}}).ThenError(ErrBadQuantity)
		}},
		{"placing twice is rejected", []Event{placed}, func(sc *scenario) {
			sc.When(placeAda).ThenError(ErrAlreadyPlaced).ThenState(unchanged)
		}},
		{"a cancelled or shipped order cannot be placed again", []Event{placed, OrderCancelled{}}, func(sc *scenario) {
			sc.When(placeAda).ThenError(ErrAlreadyPlaced)
		}},
		{"shipping a placed order", []Event{placed}, func(sc *scenario) {
			sc.When(ShipOrder{Carrier: "DHL"}).Then(OrderShipped{Carrier: "DHL"}).ThenState(func(o *Order) {
				o.Status, o.Carrier = StatusShipped, "DHL"
			})
		}},
		{"shipping needs a carrier", []Event{placed}, func(sc *scenario) {
			sc.When(ShipOrder{Carrier: " "}).ThenError(ErrNoCarrier).ThenState(unchanged)
		}},
		{"an unplaced order cannot ship", nil, func(sc *scenario) {
			sc.When(ShipOrder{Carrier: "DHL"}).ThenError(ErrNotPlaced)
		}},
		{"a cancelled order cannot ship", []Event{placed, OrderCancelled{Reason: "duplicate"}}, func(sc *scenario) {
			sc.When(ShipOrder{Carrier: "DHL"}).ThenError(ErrCancelled).ThenState(unchanged)
		}},
		{"an order ships once", []Event{placed, OrderShipped{Carrier: "DHL"}}, func(sc *scenario) {
			sc.When(ShipOrder{Carrier: "UPS"}).ThenError(ErrShipped)
		}},
		{"cancelling a placed order", []Event{placed}, func(sc *scenario) {
			sc.When(CancelOrder{Reason: " changed my mind\n"}).Then(OrderCancelled{Reason: "changed my mind"}).ThenState(func(o *Order) {
				o.Status, o.CancelReason = StatusCancelled, "changed my mind"
			})
		}},
		{"a shipped order cannot be cancelled", []Event{placed, OrderShipped{Carrier: "DHL"}}, func(sc *scenario) {
			sc.When(CancelOrder{}).ThenError(ErrShipped).ThenState(unchanged)
		}},
		{"an unplaced order cannot be cancelled", nil, func(sc *scenario) {
			sc.When(CancelOrder{}).ThenError(ErrNotPlaced)
		}},
		{"an order is cancelled once", []Event{placed, OrderCancelled{}}, func(sc *scenario) {
			sc.When(CancelOrder{}).ThenError(ErrCancelled)
		}},
		{"rejections match aggregate.ErrRejected", nil, func(sc *scenario) {
			sc.When(CancelOrder{}).ThenError(aggregate.ErrRejected)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testkit.Both(t, definition(t), tt.given, tt.steps)
		})
	}
}

// TestSnapshotsRoundTrip checks that a snapshot restores the state exactly:
// a field the JSON codec cannot see would be lost on every snapshot.
func TestSnapshotsRoundTrip(t *testing.T) {
	def := definition(t)
	want := Order{Status: StatusShipped, Customer: "ada", Lines: adaLines, Carrier: "DHL"}
	snap, err := def.Snapshots.Encode("order/1", 2, want)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := def.Snapshots.Decode(snap)
	if err != nil || !ok {
		t.Fatalf("decode: ok=%v, %v", ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state changed by a snapshot (-want +got):\n%s", diff)
	}
}

// goldenSessions are the commands behind the golden files. They are used
// only to record a golden file that is missing (with
// COMPOSABLE_UPDATE_GOLDEN=1): a recorded stream is never re-recorded, so
// that today's code keeps being checked against yesterday's events. To
// record a stream again, delete its file.
var goldenSessions = []struct {
	name string
	cmds []Command
}{
	{"shipped", []Command{placeAda, ShipOrder{Carrier: "DHL"}}},
	{"cancelled", []Command{placeAda, CancelOrder{Reason: "changed my mind"}}},
}

// TestGoldenReplay replays every recorded stream in testdata with today's
// event registry and apply, and compares the state with the recorded one:
// a change to the events' encoding that breaks stored orders fails here.
func TestGoldenReplay(t *testing.T) {
	if os.Getenv(testkit.UpdateGoldenEnv) == "1" {
		for _, s := range goldenSessions {
			path := filepath.Join("testdata", "order-"+s.name+".golden.json")
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				stream, events := recordSession(t, s.name, s.cmds)
				testkit.RecordGolden(t, path, stream, events)
			}
		}
	}
	paths, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden files (%v): run with %s=1 to record them", err, testkit.UpdateGoldenEnv)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			testkit.GoldenReplay(t, definition(t), path)
		})
	}
}

// recordSession sends cmds to order id through a runtime over a memory
// store and returns the stream as stored.
func recordSession(t *testing.T, id string, cmds []Command) (string, []persistence.RecordedEvent) {
	t.Helper()
	ctx := testContext(t)
	store := memory.New()
	var stream string
	err := withShop(store, quiet(), func(s *shop) error {
		stream = s.orders.Stream(id)
		for i, c := range cmds {
			if _, err := s.orders.Send(ctx, id, c, aggregate.WithCommandID(fmt.Sprintf("%s/%d", id, i+1))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	events, err := store.Load(ctx, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	return stream, events
}

// TestRetriedCommandIDIsADuplicate sends a placement, then retries it with
// the same command id — in the same runtime and after a restart. Each retry
// returns the original outcome, marked Duplicate, and writes nothing; the
// same command without an id would be rejected as a second placement.
func TestRetriedCommandIDIsADuplicate(t *testing.T) {
	ctx := testContext(t)
	store := memory.New()
	var first aggregate.Result[Order, Event]
	checkRetry := func(s *shop) error {
		res, err := s.orders.Send(ctx, "o1", placeAda, aggregate.WithCommandID("o1/place"))
		if err != nil {
			return err
		}
		if !res.Duplicate || res.Version != first.Version || res.Position != first.Position {
			t.Errorf("retry: duplicate=%v version=%d position=%d, want a duplicate of version %d position %d",
				res.Duplicate, res.Version, res.Position, first.Version, first.Position)
		}
		if diff := cmp.Diff([]Event{placed}, res.Events); diff != "" {
			t.Errorf("retry: events differ from the original's (-want +got):\n%s", diff)
		}
		return nil
	}
	err := withShop(store, quiet(), func(s *shop) error {
		var err error
		if first, err = s.orders.Send(ctx, "o1", placeAda, aggregate.WithCommandID("o1/place")); err != nil {
			return err
		}
		if first.Duplicate || first.Version != 1 {
			t.Errorf("first send: %+v", first)
		}
		if err := checkRetry(s); err != nil {
			return err
		}
		if _, err := s.orders.Send(ctx, "o1", placeAda); !errors.Is(err, ErrAlreadyPlaced) {
			t.Errorf("the same command without an id: %v, want ErrAlreadyPlaced", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := withShop(store, quiet(), checkRetry); err != nil { // after a restart
		t.Fatal(err)
	}
	if n := len(store.Events()); n != 1 {
		t.Fatalf("%d events stored, want 1: a retry wrote", n)
	}
}

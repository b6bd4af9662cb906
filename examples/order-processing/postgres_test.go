package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestRestartOverPostgres places an order with one runtime, closes it,
// and ships the order with a new runtime over the same PostgreSQL store:
// the second runtime knows the order only from the stored events.
func TestRestartOverPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "order_example")
	ctx := testContext(t)
	store, err := postgres.New(ctx, pool, postgres.WithSchema(schema), postgres.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() }) // before the schema is dropped and the pool closed

	err = withShop(store, quiet(), func(s *shop) error {
		_, err := s.orders.Send(ctx, "o1", placeAda, aggregate.WithCommandID("o1/place"))
		return err
	})
	if err != nil {
		t.Fatalf("runtime 1: %v", err)
	}

	err = withShop(store, quiet(), func(s *shop) error {
		res, err := s.orders.State(ctx, "o1")
		if err != nil {
			return err
		}
		want := Order{Status: StatusPlaced, Customer: "ada", Lines: adaLines}
		if diff := cmp.Diff(want, res.State); diff != "" || res.Version != 1 {
			t.Errorf("runtime 2 rebuilt version %d, state (-want +got):\n%s", res.Version, diff)
		}
		res, err = s.orders.Send(ctx, "o1", ShipOrder{Carrier: "DHL"}, aggregate.WithCommandID("o1/ship"))
		if err != nil {
			return err
		}
		if res.Version != 2 || res.State.Status != StatusShipped {
			t.Errorf("ship: version %d, status %s", res.Version, res.State.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("runtime 2: %v", err)
	}

	stored, err := store.Load(ctx, "order/o1", 1)
	if err != nil {
		t.Fatal(err)
	}
	def := definition(t)
	type row struct {
		Version   int64
		Type      string
		CommandID string
		Event     Event
	}
	var got []row
	for _, r := range stored {
		ev, err := persistence.Decode[Event](def.Events, r.EventData)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, row{r.Version, r.Type, r.Metadata[persistence.MetadataCommandID], ev})
	}
	want := []row{
		{1, "order.placed", "o1/place", placed},
		{2, "order.shipped", "o1/ship", OrderShipped{Carrier: "DHL"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stream differs (-want +got):\n%s", diff)
	}
}

// TestRunPhasesOverPostgres runs main's two halves as the two processes
// of the README would — each run opens its own pool and runtime — and then
// the first half again, which the command ids make harmless.
func TestRunPhasesOverPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	cfg := config{store: storePostgres, postgresURL: pgtest.URL(), schema: pgtest.Schema(t, pool, "order_example"), order: "1001"}
	phases := []struct {
		phase string
		want  []string
	}{
		{phaseShip, nil}, // fails: nothing placed yet
		{phasePlace, []string{"-> OrderPlaced{", "(version 1)", "-> duplicate"}},
		{phaseShip, []string{
			"rebuilt from the store: order 1001 is placed, for ada, 2 line(s), version 1",
			"-> OrderShipped{Carrier:DHL} (version 2)",
			"-> rejected: order has shipped",
			"2 order.shipped",
		}},
		{phasePlace, []string{"[command id 1001/place]\n      -> duplicate"}},
	}
	for i, p := range phases {
		cfg.phase = p.phase
		var out bytes.Buffer
		err := run(testContext(t), &out, cfg)
		if p.want == nil {
			if err == nil || !strings.Contains(err.Error(), "run -phase=place first") {
				t.Fatalf("run %d (%s) before placing: %v, want the hint to place first", i+1, p.phase, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("run %d (%s): %v\n%s", i+1, p.phase, err, out.String())
		}
		for _, w := range p.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("run %d (%s): output lacks %q:\n%s", i+1, p.phase, w, out.String())
			}
		}
	}
	if out := countEvents(t, cfg); out != 2 {
		t.Errorf("%d events stored, want 2", out)
	}
}

// countEvents counts the events in the schema cfg points at.
func countEvents(t *testing.T, cfg config) int {
	t.Helper()
	ctx := testContext(t)
	store, closeStore, err := openStore(ctx, cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = closeStore() }()
	events, err := store.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(events)
}

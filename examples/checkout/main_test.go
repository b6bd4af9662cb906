package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable/examples/internal/apptest"
	"github.com/composable-go/composable/testkit/pgtest"
)

// pathSteps are what each section of the demo's output must show: its
// key steps, in order.
var pathSteps = map[string][]string{
	"1. happy path": {
		"command  PlaceOrder{Customer:ada SKU:chair", "event    OrderPlaced{Order:1001",
		"deliver  OrderPlaced → group saga.checkout", "saga     started",
		"Reserve{Order:1001 Quantity:2} → inventory/chair   undo: Release{Order:1001}",
		"Charge{Amount:80.00 Card:tok_visa} → payment/1001   undo: Refund{}",
		"timer    reservation armed", "ReservationPending{Order:1001 Quantity:2 Short:2}",
		"Restock{Quantity:5} → inventory/chair", "ReservationConfirmed{Order:1001 Quantity:2}",
		"deliver  ReservationConfirmed", "records StockHeld{}",
		"ConfirmOrder{} → order/1001", "OrderConfirmed{}", "COMPLETED",
		"⇒ saga completed · order confirmed · payment charged 80.00",
	},
	"2. payment declined": {
		"event    OrderPlaced{Order:1002", "Charge{Amount:35.00 Card:tok_chargeDeclined}",
		"refused: card declined: the provider refuses card tok_chargeDeclined",
		"CancelOrder{Reason:payment refused: card declined", "OrderCancelled{Reason:payment refused: card declined",
		"compensating, newest step first: payment refused: card declined",
		"undo     compensate:reserve Release{Order:1002} → inventory/lamp", "Released{Order:1002 Quantity:1",
		"FAILED: payment refused: card declined", "⇒ saga failed · order cancelled · payment never charged",
	},
	"3. reservation times out": {
		"event    OrderPlaced{Order:1003", "ReservationPending{Order:1003", "Charged{Amount:450.00",
		"timer    reservation FIRED", "CancelOrder{Reason:stock not held within",
		"Refund{} → payment/1003", "Refunded{Amount:450.00}", "Released{Order:1003 Quantity:1 Pending:true}",
		"FAILED: stock not held within", "⇒ saga failed · order cancelled · payment charged and refunded 450.00",
	},
}

// pathNever are what a section must not show: the timer that fired is not
// also disarmed.
var pathNever = map[string][]string{
	"3. reservation times out": {"reservation disarmed"},
}

// checkOutput checks that each path's section of out shows its steps, and
// none it must not.
func checkOutput(t *testing.T, out string) {
	t.Helper()
	sections := map[string]string{}
	for _, s := range strings.Split(out, "\n── ") {
		for title := range pathSteps {
			if strings.HasPrefix(s, title) {
				sections[title] = s
			}
		}
	}
	for title, steps := range pathSteps {
		s, ok := sections[title]
		if !ok {
			t.Errorf("no section %q in the output:\n%s", title, out)
			continue
		}
		// The saga dispatches its steps concurrently, so only some
		// steps have an order; look for each on its own.
		for _, step := range steps {
			if !strings.Contains(s, step) {
				t.Errorf("section %q lacks %q:\n%s", title, step, s)
			}
		}
		for _, step := range pathNever[title] {
			if strings.Contains(s, step) {
				t.Errorf("section %q shows %q:\n%s", title, step, s)
			}
		}
	}
	if !strings.Contains(out, "all three paths ended as expected") {
		t.Errorf("the demo did not finish:\n%s", out)
	}
}

// TestRunInMemory runs main's demo on its embedded defaults, with a short
// reservation timeout.
func TestRunInMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(testContext(t), &out, quiet(), config{timeout: 500 * time.Millisecond}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	checkOutput(t, out.String())
	if !strings.HasPrefix(out.String(), "checkout example — event store: memory · bus: memory · reservation timeout 500ms") {
		t.Errorf("header:\n%s", out.String())
	}
}

// TestRunOnPostgresAndKafka runs the demo with -postgres (a fresh schema)
// and -kafka=embedded.
func TestRunOnPostgresAndKafka(t *testing.T) {
	schema := pgtest.Schema(t, pgtest.Pool(t), "checkout_example")
	var out bytes.Buffer
	cfg := config{postgresURL: pgtest.URL(), schema: schema, kafka: kafkaEmbedded, timeout: time.Second}
	if err := run(testContext(t), &out, quiet(), cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Ids carry the run's tag over PostgreSQL.
	checkOutput(t, strings.NewReplacer(tagOf(out.String()), "").Replace(out.String()))
}

// tagOf finds the tag of the run that printed out: what follows order
// 1001's id.
func tagOf(out string) string {
	_, rest, _ := strings.Cut(out, "order/1001")
	tag, _, _ := strings.Cut(rest, "\n")
	return tag
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr string
	}{
		{"defaults", nil, config{schema: defaultSchema, timeout: 2 * time.Second}, ""},
		{"postgres and kafka", []string{"-postgres", "postgres://db/x", "-kafka=embedded", "-timeout=5s"},
			config{postgresURL: "postgres://db/x", schema: defaultSchema, kafka: kafkaEmbedded, timeout: 5 * time.Second}, ""},
		{"every problem at once", []string{"-postgres=x", "-schema=", "-timeout=0s"}, config{}, "-timeout=0s: must be positive\n-schema is empty"},
		{"no arguments", []string{"extra"}, config{}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, io.Discard)
			apptest.CheckConfig(t, got, err, tt.want, tt.wantErr)
		})
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/composable-go/composable/examples/internal/apptest"
)

// TestRunInMemory runs main's demo over a memory store and checks its
// whole output: the order survives the restart between the runtimes, the
// retry is a duplicate and the rules reject what they should.
func TestRunInMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(testContext(t), &out, config{store: storeMemory, phase: phaseAll, order: "7"}); err != nil {
		t.Fatal(err)
	}
	want := `== runtime 1 (memory): place order 7
  PlaceOrder{Customer:ada Lines:[{SKU:book Quantity:2} {SKU:pen Quantity:0}]}
      -> rejected: line 2 (pen): quantity must be positive
  PlaceOrder{Customer:ada Lines:[{SKU:book Quantity:2} {SKU:pen Quantity:5}]} [command id 7/place]
      -> OrderPlaced{Customer:ada Lines:[{SKU:book Quantity:2} {SKU:pen Quantity:5}]} (version 1)
  retry: PlaceOrder{Customer:ada Lines:[{SKU:book Quantity:2} {SKU:pen Quantity:5}]} [command id 7/place]
      -> duplicate: handled before, nothing written (it recorded OrderPlaced{Customer:ada Lines:[{SKU:book Quantity:2} {SKU:pen Quantity:5}]} at version 1)
== runtime 1 closed: nothing in memory survives but the store
== runtime 2 (memory): ship order 7
  rebuilt from the store: order 7 is placed, for ada, 2 line(s), version 1
  ShipOrder{Carrier:DHL} [command id 7/ship]
      -> OrderShipped{Carrier:DHL} (version 2)
  CancelOrder{Reason:changed my mind}
      -> rejected: order has shipped
  stream order/7:
    1 order.placed    {"customer":"ada","lines":[{"sku":"book","quantity":2},{"sku":"pen","quantity":5}]} (command id 7/place)
    2 order.shipped   {"carrier":"DHL"} (command id 7/ship)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output differs (-want +got):\n%s", diff)
	}
}

func TestParseConfig(t *testing.T) {
	noEnv := func(string) string { return "" }
	withEnv := func(k string) string {
		if k == envPostgresURL {
			return "postgres://from-env/db"
		}
		return ""
	}
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		want    config
		wantErr string
	}{
		{"defaults", nil, noEnv, config{store: storeMemory, postgresURL: defaultPostgresURL, schema: defaultSchema, phase: phaseAll, order: "1001"}, ""},
		{"the environment sets the url", []string{"-store=postgres"}, withEnv,
			config{store: storePostgres, postgresURL: "postgres://from-env/db", schema: defaultSchema, phase: phaseAll, order: "1001"}, ""},
		{"the flag beats the environment", []string{"-store=postgres", "-postgres-url=postgres://flag/db", "-phase=ship", "-order=9"}, withEnv,
			config{store: storePostgres, postgresURL: "postgres://flag/db", schema: defaultSchema, phase: phaseShip, order: "9"}, ""},
		{"phases need a durable store", []string{"-phase=place"}, noEnv, config{}, "needs -store=postgres"},
		{"every problem is reported", []string{"-store=disk", "-phase=later", "-order="}, noEnv, config{}, `-store="disk"`},
		{"no arguments", []string{"extra"}, noEnv, config{}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, tt.getenv)
			apptest.CheckConfig(t, got, err, tt.want, tt.wantErr)
		})
	}
	if _, err := parseConfig([]string{"-store=disk", "-phase=later", "-order="}, noEnv); strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems reported at once, got %v", err)
	}
}

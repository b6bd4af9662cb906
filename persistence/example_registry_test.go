package persistence_test

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/composable-go/composable/persistence"
)

func ExampleRegister() {
	type OrderPlaced struct {
		OrderID string `json:"order_id"`
		Total   int    `json:"total"`
	}
	r := persistence.NewRegistry()
	// A plain struct is encoded as JSON; a protobuf message, registered by
	// pointer, as protobuf.
	if err := persistence.Register[OrderPlaced](r, "order.placed"); err != nil {
		fmt.Println(err)
		return
	}
	if err := persistence.Register[*wrapperspb.StringValue](r, "note.added"); err != nil {
		fmt.Println(err)
		return
	}

	e, err := r.Marshal(OrderPlaced{OrderID: "o-1", Total: 42})
	if err != nil {
		fmt.Println(err)
		return
	}
	e.ID = "evt-1" // ID and Metadata are the caller's
	fmt.Printf("%s v%d %s\n", e.Type, e.SchemaVersion, e.Data)

	note, err := r.Marshal(wrapperspb.String("gift wrap"))
	if err != nil {
		fmt.Println(err)
		return
	}

	// A consumer of a mixed stream switches on the decoded type.
	for _, stored := range []persistence.EventData{e, note} {
		v, err := r.Unmarshal(stored)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch v := v.(type) {
		case OrderPlaced:
			fmt.Println("order", v.OrderID, "total", v.Total)
		case *wrapperspb.StringValue:
			fmt.Println("note", v.GetValue())
		}
	}

	// Decode is the typed shortcut.
	placed, err := persistence.Decode[OrderPlaced](r, e)
	fmt.Println(placed.OrderID, err)

	_, err = r.Marshal(struct{}{})
	fmt.Println(err)
	// Output:
	// order.placed v1 {"order_id":"o-1","total":42}
	// order o-1 total 42
	// note gift wrap
	// o-1 <nil>
	// persistence: unknown event type "struct {}"
}

func ExampleRegistry_Upcast() {
	// Version 2 of the event renamed "customer" to "customer_id".
	type OrderPlaced struct {
		CustomerID string `json:"customer_id"`
	}
	r := persistence.NewRegistry()
	if err := persistence.Register[OrderPlaced](r, "order.placed", persistence.WithSchemaVersion(2)); err != nil {
		fmt.Println(err)
		return
	}
	err := r.Upcast("order.placed", 1, func(data []byte) ([]byte, error) {
		var v1 struct {
			Customer string `json:"customer"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(OrderPlaced{CustomerID: v1.Customer})
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// An event stored by the previous release.
	old := persistence.EventData{ID: "evt-1", Type: "order.placed", SchemaVersion: 1, Data: []byte(`{"customer":"ann"}`)}
	placed, err := persistence.Decode[OrderPlaced](r, old)
	fmt.Println(placed.CustomerID, err)

	// An event from a newer release is refused, not mis-decoded.
	_, err = r.Unmarshal(persistence.EventData{Type: "order.placed", SchemaVersion: 3, Data: []byte(`{}`)})
	fmt.Println(err)
	// Output:
	// ann <nil>
	// persistence: event type "order.placed": schema version 3 is newer than the current 2
}

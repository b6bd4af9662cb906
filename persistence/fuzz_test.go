package persistence_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/composable-go/composable/persistence"
)

// FuzzUnmarshal feeds arbitrary type names, schema versions and bytes to
// Registry.Unmarshal, through the JSON upcaster chain of "order.placed" and
// the protobuf "greeting". Unmarshal must never panic, must return a value
// or an error, and what it returns must encode and decode to itself.
func FuzzUnmarshal(f *testing.F) {
	r := newTestRegistry(f)
	f.Add("order.placed", 1, []byte(`{"customer":"ann","total":100}`))
	f.Add("order.placed", 2, []byte(`{"customer_id":"ann","total":100}`))
	f.Add("order.placed", 3, []byte(`{"customer_id":"ann","total":100,"currency":"USD"}`))
	f.Add("order.placed", 0, []byte(`null`))
	f.Add("order.placed", 1, []byte(`[1,2]`))
	f.Add("order.placed", 2, []byte(`{"currency":null,"total":1e2}`))
	f.Add("order.placed", 4, []byte(`{}`))
	f.Add("order.shipped", 1, []byte(`{"order_id":"o-1"}`))
	f.Add("order.cancelled", 1, []byte(`{"reason":"late"}`))
	f.Add("greeting", 1, []byte("\x0a\x02hi"))
	f.Add("greeting", 0, []byte("\x0a\x01\xff"))
	f.Add("greeting", 1, []byte("\xff\xff\xff\xff"))
	f.Add("greeting", -7, []byte(nil))
	f.Add("flag", 1, []byte(`{"value":true}`))
	f.Add("nope", 1, []byte(`{}`))
	f.Add("", 0, []byte{})
	f.Fuzz(func(t *testing.T, eventType string, version int, data []byte) {
		v, err := r.Unmarshal(persistence.EventData{Type: eventType, SchemaVersion: version, Data: data})
		if err != nil {
			if v != nil {
				t.Fatalf("Unmarshal returned %v with error %v", v, err)
			}
			return
		}
		if v == nil {
			t.Fatal("Unmarshal returned neither a value nor an error")
		}
		e, err := r.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%#v) after a successful Unmarshal: %v", v, err)
		}
		if e.Type != eventType {
			t.Fatalf("decoded %q, encoded %q", eventType, e.Type)
		}
		again, err := r.Unmarshal(e)
		if err != nil {
			t.Fatalf("Unmarshal of the re-encoded event %q: %v", e.Data, err)
		}
		if diff := cmp.Diff(v, again, protocmp.Transform()); diff != "" {
			t.Fatalf("re-encoding changed the event (-first +second):\n%s", diff)
		}
	})
}

package bus_test

import (
	"strings"
	"testing"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// TestSkipMarker: a marker keeps the event's coordinates, topic and key,
// drops its data and metadata, and says what it stands for.
func TestSkipMarker(t *testing.T) {
	m := bus.Message{Topic: "orders", Key: "order/1", Event: persistence.RecordedEvent{
		EventData: persistence.EventData{ID: "e7", Type: "order.placed", SchemaVersion: 3, Data: []byte("big"), Metadata: map[string]string{"k": "v"}},
		StreamID:  "order/1", Version: 7, GlobalPosition: 42,
	}}
	mk := bus.SkipMarker(m, "too large")
	e := mk.Event
	if mk.Topic != "orders" || mk.Key != "order/1" || e.ID != "e7" || e.StreamID != "order/1" || e.Version != 7 || e.GlobalPosition != 42 ||
		e.Type != bus.SkippedType || e.Metadata != nil {
		t.Fatalf("marker %+v", mk)
	}
	skip, ok := bus.Skipped(e)
	if !ok || skip.Type != "order.placed" || skip.Reason != "too large" {
		t.Fatalf("Skipped = %+v, %v", skip, ok)
	}
	if _, ok := bus.Skipped(m.Event); ok {
		t.Fatal("an event is taken for a marker")
	}
	e.Data = []byte("not json")
	if skip, ok := bus.Skipped(e); !ok || skip != (bus.Skip{}) {
		t.Fatalf("a marker whose data does not decode: %+v, %v; want a marker saying nothing", skip, ok)
	}
}

// TestSkipMarkerIsNotInflated: characters JSON would escape for HTML stay
// one byte, so a marker is about as large as the text it carries.
func TestSkipMarkerIsNotInflated(t *testing.T) {
	typ, reason := strings.Repeat("<&>", 300), strings.Repeat("<", 256)
	mk := bus.SkipMarker(bus.Message{Event: persistence.RecordedEvent{EventData: persistence.EventData{ID: "e", Type: typ}}}, reason)
	if n := len(mk.Event.Data); n > len(typ)+len(reason)+32 {
		t.Fatalf("marker data %d bytes for %d bytes of text", n, len(typ)+len(reason))
	}
	if skip, ok := bus.Skipped(mk.Event); !ok || skip.Type != typ || skip.Reason != reason {
		t.Fatalf("Skipped = %+v, %v", skip, ok)
	}
}

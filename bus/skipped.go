package bus

import (
	"bytes"
	"encoding/json"

	"github.com/composable-go/composable/persistence"
)

// SkippedType is the event type of a skip marker. The relay publishes a
// marker in place of an event the bus refused for good (and that it
// dead-lettered), on the event's own topic and with its key: consumers
// that follow each stream's versions — a bus-fed projection — see the
// marker where the event should be and move past it instead of waiting for
// it. A marker carries the event's id, stream, version and position; its
// data ([Skip]) names the event's type and why it was passed over; it has
// no metadata. Consumers whose registries do not know the type pass it
// over as an unknown type; [Skipped] recognises it.
//
// A marker takes its event's place for good: it has the event's id and
// stream version, so a consumer that deduplicates by either (a bus-fed
// projection, bus/postgres.Deduplicator) counts that event as handled —
// skipped — and will not handle it if it is published again later. To
// apply a skipped event, rebuild the consumer from the event store's feed.
const SkippedType = "composable.skipped"

// Skip is what a skip marker says about the event it stands for.
type Skip struct {
	// Type is the event's type.
	Type string `json:"type"`
	// Reason is why the bus refused it.
	Reason string `json:"reason"`
}

// SkipMarker returns the marker that stands for m's event on m's topic,
// refused with reason.
func SkipMarker(m Message, reason string) Message {
	e := m.Event
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	enc.SetEscapeHTML(false)                           // '<' stays one byte: the marker's size stays near its text's
	_ = enc.Encode(Skip{Type: e.Type, Reason: reason}) // strings only: cannot fail
	e.EventData = persistence.EventData{ID: e.ID, Type: SkippedType, SchemaVersion: 1, Data: bytes.TrimSuffix(data.Bytes(), []byte("\n"))}
	return Message{Topic: m.Topic, Key: m.Key, Event: e}
}

// Skipped reports whether e is a skip marker, and returns what it says.
func Skipped(e persistence.RecordedEvent) (Skip, bool) {
	if e.Type != SkippedType {
		return Skip{}, false
	}
	var s Skip
	_ = json.Unmarshal(e.Data, &s) // a marker that does not decode is still one
	return s, true
}

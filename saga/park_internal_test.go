package saga

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// TestParkingSurvivesASnapshot: a parked instance's deferred inputs are
// part of its snapshot, though they are not exported.
func TestParkingSurvivesASnapshot(t *testing.T) {
	due := time.Unix(60, 0).UTC()
	in := Instance[int]{ID: "x", Status: Parked, State: 7, Parked: &Parking{
		Reason: "step s failed: down", Step: "s", From: Running, Since: due,
		deferred: []input{
			{Event: &persistence.RecordedEvent{EventData: persistence.EventData{ID: "e1", Type: "t", Data: []byte(`{}`)}}, Mode: Continue},
			{Timer: "deadline", Due: due},
			{Result: &evResulted{Step: "other", Error: "refused", Rejected: true}},
		},
	}}
	codec := persistence.SnapshotCodec[Instance[int]]{SchemaVersion: 1, Codec: persistence.JSONCodec{}}
	data, err := codec.Codec.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Instance[int]
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	p := out.Parked
	if p == nil || p.Reason != in.Parked.Reason || p.Step != "s" || p.From != Running || !p.Since.Equal(due) || p.Deferred() != 3 {
		t.Fatalf("parking after a round trip: %+v (%d deferred)", p, p.Deferred())
	}
	if d := p.deferred; d[0].Event.ID != "e1" || d[0].Mode != Continue || d[1].Timer != "deadline" || !d[1].Due.Equal(due) ||
		d[2].Result.Step != "other" || !d[2].Result.Rejected {
		t.Fatalf("deferred inputs after a round trip: %+v", d)
	}
	// A clone does not share them.
	c := out.clone(func(s int) int { return s })
	c.Parked.deferred[0].Timer = "changed"
	if out.Parked.deferred[0].Timer != "" {
		t.Fatal("a clone shares the deferred inputs")
	}
}

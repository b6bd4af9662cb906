package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

func TestDecodeMetadata(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{``, nil},
		{`{}`, nil},
		{` { } `, nil},
		{`{"a": "b"}`, map[string]string{"a": "b"}},
		{`{"a":"b","c":""}`, map[string]string{"a": "b", "c": ""}},
		{`{"ü": "日本"}`, map[string]string{"ü": "日本"}},
		{`{"q": "say \"hi\"\n", "u": "\u00e9"}`, map[string]string{"q": "say \"hi\"\n", "u": "é"}}, // slow path
	}
	for _, tt := range tests {
		got := decodeMetadata([]byte(tt.in), interner{}, nil)
		if !maps.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("decodeMetadata(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
	// What the store does not write — the jsonb column may hold it all the
	// same — is read leniently, never an error that would stop a reader.
	lenient := map[string]map[string]string{
		`{"a": 1, "b": true, "c": {"x": "y"}}`: {"a": "1", "b": "true", "c": `{"x": "y"}`},
		`[1]`:                                  {UnreadableMetadata: `[1]`},
		`"str"`:                                {UnreadableMetadata: `"str"`},
		`{`:                                    {UnreadableMetadata: `{`}, // not from jsonb, but still no error
	}
	for in, want := range lenient {
		if got := decodeMetadata([]byte(in), interner{}, nil); !maps.Equal(got, want) {
			t.Errorf("decodeMetadata(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzDecodeMetadata checks the fast path against encoding/json.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{`{"a": "b"}`, `{}`, `{"k":"v","x":"y"}`, `{"a": "\u0041"}`, `{"a": 1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeFlat(b, interner{}, nil)
		if !ok {
			return
		}
		var want map[string]string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("decodeFlat(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// TestLoadedEventsShareNothingMutable: scanEvents cuts data from shared
// slabs and copies repeated metadata, so a caller changing one event must
// not change another.
func TestLoadedEventsShareNothingMutable(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "read_alias"))
	meta := map[string]string{"correlation": "c-1", "causation": "cmd-1"}
	big := bytes.Repeat([]byte("x"), slabSize) // past the slab limit: its own allocation
	events := []persistence.EventData{
		{ID: "a", Type: "t", SchemaVersion: 1, Data: []byte("aaaa"), Metadata: meta},
		{ID: "b", Type: "t", SchemaVersion: 1, Data: []byte("bbbb"), Metadata: meta},
		{ID: "c", Type: "t", SchemaVersion: 1, Data: []byte{}, Metadata: map[string]string{"correlation": "c-1", "causation": "cmd-2"}},
		{ID: "d", Type: "t", SchemaVersion: 1, Data: big},
	}
	if _, err := s.Append(ctxFor(t), "alias", persistence.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	for _, read := range []func() ([]persistence.RecordedEvent, error){
		func() ([]persistence.RecordedEvent, error) { return s.Load(ctxFor(t), "alias", 1) },
		func() ([]persistence.RecordedEvent, error) { return s.ReadAll(ctxFor(t), 0, 10) },
	} {
		got, err := read()
		if err != nil || len(got) != 4 {
			t.Fatalf("%d events, %v", len(got), err)
		}
		if got[2].Data == nil || len(got[2].Data) != 0 || !bytes.Equal(got[3].Data, big) {
			t.Fatalf("data: %q, %d bytes", got[2].Data, len(got[3].Data))
		}
		got[0].Data = append(got[0].Data, "!!!!"...) // must not write into b's bytes
		got[0].Data[0] = 'z'
		got[0].Metadata["causation"] = "changed"
		got[0].Metadata["extra"] = "x"
		if string(got[1].Data) != "bbbb" || !maps.Equal(got[1].Metadata, meta) {
			t.Fatalf("changing event a changed event b: %q %v", got[1].Data, got[1].Metadata)
		}
		if got[2].Metadata["causation"] != "cmd-2" || got[2].Metadata["correlation"] != "c-1" || got[3].Metadata != nil {
			t.Fatalf("metadata: %v, %v", got[2].Metadata, got[3].Metadata)
		}
		for i, id := range []string{"a", "b", "c", "d"} {
			if got[i].ID != id {
				t.Fatalf("event %d: id %q", i, got[i].ID)
			}
		}
	}
}

// TestManyIDsCrossSlabs: ids are cut from one string per group of rows;
// every event keeps its own across group boundaries.
func TestManyIDsCrossSlabs(t *testing.T) {
	pool := pgtest.Pool(t)
	s := newStore(t, pool, pgtest.Schema(t, pool, "read_ids"))
	var events []persistence.EventData
	for i := range 3000 { // ids of ~40 bytes: several 16 KiB groups
		events = append(events, ev(fmt.Sprintf("event-%04d-%s", i, strings.Repeat("i", 30))))
	}
	if _, err := s.Append(ctxFor(t), "ids", persistence.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctxFor(t), "ids", 1)
	if err != nil || len(got) != len(events) {
		t.Fatalf("%d events, %v", len(got), err)
	}
	for i := range events {
		if got[i].ID != events[i].ID || string(got[i].Data) != events[i].ID {
			t.Fatalf("event %d: id %q data %q, want %q", i, got[i].ID, got[i].Data, events[i].ID)
		}
	}
}

package testkit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// UpdateGoldenEnv names the environment variable that, set to 1, makes
// [GoldenReplay] write the replayed state into the golden file instead of
// comparing with it.
const UpdateGoldenEnv = "COMPOSABLE_UPDATE_GOLDEN"

// GoldenStream is a recorded event stream with the state it must produce:
// the content of a golden file in testdata/. Events keep the type and schema
// version they were written with, so a replay exercises today's decoders and
// upcasters on yesterday's data.
type GoldenStream struct {
	Stream string          `json:"stream"`
	Events []GoldenEvent   `json:"events"`
	State  json.RawMessage `json:"state,omitempty"`
}

// GoldenEvent is one recorded event. Data holds JSON-encoded events as
// readable JSON; other encodings (protobuf) go to DataBase64.
type GoldenEvent struct {
	Type          string            `json:"type"`
	SchemaVersion int               `json:"schema_version"`
	Data          json.RawMessage   `json:"data,omitempty"`
	DataBase64    []byte            `json:"data_base64,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
}

// RecordGolden writes events, as stored, to a golden file at path (creating
// its directory), without a state: run [GoldenReplay] once with
// COMPOSABLE_UPDATE_GOLDEN=1 to add it, and review the result.
func RecordGolden(t TB, path, stream string, events []persistence.RecordedEvent) {
	t.Helper()
	g := GoldenStream{Stream: stream}
	for _, e := range events {
		ge := GoldenEvent{Type: e.Type, SchemaVersion: e.SchemaVersion, Metadata: e.Metadata}
		if json.Valid(e.Data) && len(e.Data) > 0 {
			ge.Data = json.RawMessage(e.Data)
		} else {
			ge.DataBase64 = e.Data
		}
		g.Events = append(g.Events, ge)
	}
	writeGolden(t, path, g)
}

// GoldenReplay decodes the events of the golden file at path with the
// definition's registry (upcasters included), applies them to the initial
// state, and compares the result, as JSON, with the file's state. A schema
// or upcaster change that breaks old streams fails the test. With
// COMPOSABLE_UPDATE_GOLDEN=1 it writes the state instead.
func GoldenReplay[S, C, E, Env any](t TB, def aggregate.Definition[S, C, E, Env], path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("testkit: golden file: %v", err)
		return
	}
	var g GoldenStream
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Errorf("testkit: golden file %s: %v", path, err)
		return
	}
	state := initial(def, strings.TrimPrefix(g.Stream, def.Type+"/"))
	for i, ge := range g.Events {
		data := []byte(ge.Data)
		if ge.DataBase64 != nil {
			data = ge.DataBase64
		}
		ev, err := persistence.Decode[E](def.Events, persistence.EventData{Type: ge.Type, SchemaVersion: ge.SchemaVersion, Data: data, Metadata: ge.Metadata})
		if err != nil {
			t.Errorf("testkit: golden %s: event %d (%s v%d): %v", path, i, ge.Type, ge.SchemaVersion, err)
			return
		}
		def.Apply(&state, ev)
	}
	got, err := stateJSON(state)
	if err != nil {
		t.Errorf("testkit: golden %s: encode state: %v", path, err)
		return
	}
	if os.Getenv(UpdateGoldenEnv) == "1" {
		g.State = got
		writeGolden(t, path, g)
		return
	}
	if len(g.State) == 0 {
		t.Errorf("testkit: golden %s has no state; run with %s=1 to record it", path, UpdateGoldenEnv)
		return
	}
	var want, have any
	_ = json.Unmarshal(g.State, &want)
	_ = json.Unmarshal(got, &have)
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("testkit: golden %s: replayed state differs (-recorded +replayed):\n%s", path, diff)
	}
}

func stateJSON(s any) (json.RawMessage, error) {
	if m, ok := s.(proto.Message); ok {
		return protojson.Marshal(m)
	}
	return json.Marshal(s)
}

func writeGolden(t TB, path string, g GoldenStream) {
	t.Helper()
	out, err := json.MarshalIndent(g, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err == nil {
		err = os.WriteFile(path, append(out, '\n'), 0o644)
	}
	if err != nil {
		t.Errorf("testkit: write golden %s: %v", path, fmt.Errorf("%w", err))
	}
}

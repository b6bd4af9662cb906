package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestMarksReadOnlyMarks: listing marks reads the owner's marks, whatever
// the number of its ordinary timers: the rows the plan reads are the
// marks.
func TestMarksReadOnlyMarks(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "marks")
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	due := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var changes []persistence.TimerChange
	for i := range 5000 {
		changes = append(changes, persistence.TimerChange{Timer: persistence.Timer{
			Owner: "saga-x", ID: fmt.Sprint(i), Name: "parked", Due: due.Add(time.Duration(i)), FireID: fmt.Sprint("f", i)}})
	}
	for i := range 3 {
		changes = append(changes, persistence.TimerChange{Timer: persistence.Timer{
			Owner: "saga-x", ID: fmt.Sprint("m", i), Name: "parked", Due: persistence.Never, FireID: fmt.Sprint("m", i)}})
	}
	if _, err := s.AppendWithTimers(ctx, "s", persistence.NoStream, []persistence.EventData{ev("e1")}, changes); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "timers"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	marks, err := s.Marks(ctx, "saga-x", "parked", "", 10)
	if err != nil || len(marks) != 3 {
		t.Fatalf("Marks = %v, %v; want 3", marks, err)
	}
	var plan []struct {
		Plan map[string]any `json:"Plan"`
	}
	var raw []byte
	if err := pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+s.q.marks, "saga-x", "parked", "", 10).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	if read := rowsRead(plan[0].Plan); read > 3 {
		t.Fatalf("listing 3 marks read %d rows: %s", read, raw)
	}
	if _, err := s.Marks(ctx, "saga-x", "parked", "bad\x00", 10); !errors.Is(err, persistence.ErrInvalidText) {
		t.Fatalf("Marks after an invalid id: %v, want ErrInvalidText", err)
	}
}

// rowsRead sums what the plan's scans read: the rows they returned and
// those their filters removed.
func rowsRead(node map[string]any) int {
	n := 0
	if typ, _ := node["Node Type"].(string); typ == "Seq Scan" || typ == "Index Scan" || typ == "Index Only Scan" || typ == "Bitmap Heap Scan" {
		rows, _ := node["Actual Rows"].(float64)
		removed, _ := node["Rows Removed by Filter"].(float64)
		n += int(rows + removed)
	}
	children, _ := node["Plans"].([]any)
	for _, c := range children {
		if m, ok := c.(map[string]any); ok {
			n += rowsRead(m)
		}
	}
	return n
}

// TestCorruptMetadataRowsDoNotStopReaders: metadata written to the table
// by other means — values that are not strings, or not an object at all —
// is read leniently, so that reads over those rows (the relay's,
// projections') go on.
func TestCorruptMetadataRowsDoNotStopReaders(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "corrupt_md")
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	for _, id := range []string{"e1", "e2", "e3"} {
		if _, err := s.Append(ctx, "s", persistence.Any, persistence.EventData{ID: id, Type: "t", Data: []byte("{}"), Metadata: map[string]string{"k": "v"}}); err != nil {
			t.Fatal(err)
		}
	}
	events := pgx.Identifier{schema, "events"}.Sanitize()
	for id, md := range map[string]string{"e1": `{"n": 5, "o": {"x": 1}, "s": "str", "z": null}`, "e2": `[1, 2]`} {
		if _, err := pool.Exec(ctx, "UPDATE "+events+" SET metadata = $1::jsonb WHERE event_id = $2", md, id); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ReadAll(ctx, 0, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("ReadAll over corrupt metadata: %d events, %v", len(all), err)
	}
	loaded, err := s.Load(ctx, "s", 1)
	if err != nil || len(loaded) != 3 {
		t.Fatalf("Load over corrupt metadata: %d events, %v", len(loaded), err)
	}
	md := all[0].Metadata
	if md["n"] != "5" || md["o"] != `{"x": 1}` || md["s"] != "str" || md["z"] != "" {
		t.Fatalf("lenient metadata %q", md)
	}
	if md := all[1].Metadata; md[UnreadableMetadata] != "[1, 2]" || len(md) != 1 {
		t.Fatalf("non-object metadata read as %q", md)
	}
	if md := all[2].Metadata; md["k"] != "v" {
		t.Fatalf("the next row's metadata %q", md)
	}
}

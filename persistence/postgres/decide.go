package postgres

import (
	"encoding/json"
	"maps"

	"github.com/composable-go/composable/persistence"
)

// rowSet holds the accepted events as the column arrays of the insert.
// Every column is of a type pgx encodes without reflection: the events'
// data travel as one byte string cut up by offsets and lengths, and empty
// metadata as "" (NULL in the table). The writer's time is the batch's
// latency, so this matters.
type rowSet struct {
	versions                      []int64
	streams, ids, types, metadata []string
	schemaVersions                []int32
	data                          []byte
	offsets, lengths              []int32 // 1-based, as SQL substring counts
}

func (r *rowSet) len() int { return len(r.versions) }

// decide settles every request in arrival order against st, as if they
// were applied one after another: a request sees the versions and ids its
// accepted predecessors in the batch produced. Duplicates are reported
// before version conflicts.
func decide(batch []*request, st *state) ([]decision, *rowSet) {
	n, size := 0, 0
	for _, r := range batch {
		n += len(r.events)
		for _, e := range r.events {
			size += len(e.Data)
		}
	}
	versions := maps.Clone(st.versions)
	existing := make(map[string]bool, len(st.existing)+n)
	maps.Copy(existing, st.existing)
	var pos int64 // rows are numbered from 1; attempt adds the feed's head
	rows := &rowSet{
		versions: make([]int64, 0, n), streams: make([]string, 0, n), ids: make([]string, 0, n),
		types: make([]string, 0, n), metadata: make([]string, 0, n), schemaVersions: make([]int32, 0, n),
		data: make([]byte, 0, size), offsets: make([]int32, 0, n), lengths: make([]int32, 0, n),
	}
	out := make([]decision, 0, len(batch))
	for _, r := range batch {
		if dup := firstStored(r.events, existing); dup != "" {
			out = append(out, decision{r: r, err: &persistence.DuplicateEventError{ID: dup}})
			continue
		}
		current := versions[r.stream]
		if r.expected != persistence.Any && int64(r.expected) != current {
			out = append(out, decision{r: r, err: &persistence.ConcurrencyError{Stream: r.stream, Expected: r.expected, Actual: current}})
			continue
		}
		for i, e := range r.events {
			pos++
			rows.streams = append(rows.streams, r.stream)
			rows.versions = append(rows.versions, current+int64(i)+1)
			rows.ids = append(rows.ids, e.ID)
			rows.types = append(rows.types, e.Type)
			rows.schemaVersions = append(rows.schemaVersions, int32(e.SchemaVersion))
			rows.offsets = append(rows.offsets, int32(len(rows.data)+1))
			rows.lengths = append(rows.lengths, int32(len(e.Data)))
			rows.data = append(rows.data, e.Data...)
			rows.metadata = append(rows.metadata, r.metadata[i])
			existing[e.ID] = true
		}
		versions[r.stream] = current + int64(len(r.events))
		out = append(out, decision{r: r, res: persistence.AppendResult{Version: versions[r.stream], Position: pos}})
	}
	return out, rows
}

func firstStored(events []persistence.EventData, existing map[string]bool) string {
	for _, e := range events {
		if existing[e.ID] {
			return e.ID
		}
	}
	return ""
}

// encodeMetadata returns the JSON text of each event's metadata, "" when
// it is empty (stored as NULL).
func encodeMetadata(events []persistence.EventData) []string {
	out := make([]string, len(events))
	for i, e := range events {
		if len(e.Metadata) == 0 {
			continue
		}
		b, err := json.Marshal(e.Metadata)
		if err != nil { // a map[string]string always marshals
			continue
		}
		out[i] = string(b)
	}
	return out
}

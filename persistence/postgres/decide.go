package postgres

import (
	"maps"
	"slices"

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
// it is empty (stored as NULL). Events of one command usually carry equal
// metadata: such a run is encoded once.
func encodeMetadata(events []persistence.EventData) []string {
	out := make([]string, len(events))
	for i, e := range events {
		switch {
		case len(e.Metadata) == 0:
		case i > 0 && maps.Equal(e.Metadata, events[i-1].Metadata):
			out[i] = out[i-1]
		default:
			out[i] = metadataJSON(e.Metadata)
		}
	}
	return out
}

// metadataJSON encodes metadata as a JSON object with sorted keys. The
// store validated it as UTF-8 without NUL bytes, so only quotes,
// backslashes and control characters need escapes.
func metadataJSON(md map[string]string) string {
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	size := 2
	for _, k := range keys {
		size += len(k) + len(md[k]) + 6
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, md[k])
	}
	return string(append(b, '}'))
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

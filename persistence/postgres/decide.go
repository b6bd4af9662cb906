package postgres

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"

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
//
// The rows, and the maps decide works in, are sc's: the writer reuses them
// from batch to batch, since every allocation on its path is paid for by
// all queued appends (and the garbage collector charges its work to the
// goroutines that allocate).
func decide(batch []*request, st *state, sc *scratch) ([]decision, *rowSet) {
	sc.reset()
	versions, existing, rows := sc.versions, sc.existing, &sc.rows
	maps.Copy(versions, st.versions)
	maps.Copy(existing, st.existing)
	var pos int64 // rows are numbered from 1; attempt adds the feed's head
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

// scratch is the writer's reusable working memory for decide.
type scratch struct {
	rows     rowSet
	versions map[string]int64
	existing map[string]bool
}

// maxKept bounds what scratch keeps between batches: after an unusually
// large batch, its buffers go back to the garbage collector.
const maxKept = 4 << 20

func (sc *scratch) reset() {
	r := &sc.rows
	if cap(r.data) > maxKept || cap(r.ids) > maxKept/64 {
		*r = rowSet{}
		sc.versions, sc.existing = nil, nil
	}
	r.versions, r.streams, r.ids, r.types, r.metadata = r.versions[:0], r.streams[:0], r.ids[:0], r.types[:0], r.metadata[:0]
	r.schemaVersions, r.data, r.offsets, r.lengths = r.schemaVersions[:0], r.data[:0], r.offsets[:0], r.lengths[:0]
	if sc.versions == nil {
		sc.versions, sc.existing = map[string]int64{}, map[string]bool{}
	}
	clear(sc.versions)
	clear(sc.existing)
}

func firstStored(events []persistence.EventData, existing map[string]bool) string {
	for _, e := range events {
		if existing[e.ID] {
			return e.ID
		}
	}
	return ""
}

// encodeMetadata sets out[i] to the JSON text of events[i]'s metadata, ""
// when it is empty (stored as NULL). Events of one command usually carry
// equal metadata: such a run is encoded once.
func encodeMetadata(out []string, events []persistence.EventData, cache *metadataCache) {
	for i, e := range events {
		switch {
		case len(e.Metadata) == 0:
		case i > 0 && maps.Equal(e.Metadata, events[i-1].Metadata):
			out[i] = out[i-1]
		default:
			out[i] = cache.json(e.Metadata)
		}
	}
}

// metadataCache remembers the JSON of the last few metadata maps encoded:
// appends from one kind of command mostly carry equal metadata (the
// aggregate runtime's command type, say), and comparing a small map costs
// a fraction of encoding it. Entries are immutable copies, so a caller
// changing its map later changes nothing here. A nil cache encodes.
type metadataCache struct {
	entries [4]atomic.Pointer[metadataEntry]
	next    atomic.Uint32 // the entry to replace next
}

type metadataEntry struct {
	md   map[string]string
	json string
}

func (c *metadataCache) json(md map[string]string) string {
	if c == nil {
		return metadataJSON(md)
	}
	for i := range c.entries {
		if e := c.entries[i].Load(); e != nil && len(e.md) == len(md) && maps.Equal(e.md, md) {
			return e.json
		}
	}
	j := metadataJSON(md)
	c.entries[c.next.Add(1)%uint32(len(c.entries))].Store(&metadataEntry{md: maps.Clone(md), json: j})
	return j
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
	var b strings.Builder // its String shares its memory: one allocation
	b.Grow(size)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		writeJSONString(&b, md[k])
	}
	b.WriteByte('}')
	return b.String()
}

func writeJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

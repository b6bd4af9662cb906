package postgres

import (
	"bytes"
	"encoding/json"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/composable-go/composable/persistence"
)

// columns are the events columns every read selects, in scanEvents' order.
// Metadata is read as text so that scanEvents can decode it without
// reflection.
const columns = "global_position, stream_id, version, event_id, event_type, schema_version, data, metadata::text, recorded_at"

// scanEvents reads rows into events, expecting about n of them. Replays are
// dominated by per-row costs, so it borrows the driver's buffers where it
// can:
//   - stream ids, type names and metadata keys, which repeat, are
//     interned, and a metadata value equal to the previous row's is shared;
//   - metadata equal to the previous row's — the events of one command
//     share theirs — is copied from that row's map instead of parsed, and
//     other metadata is decoded by hand;
//   - event data is copied into shared slabs rather than one allocation
//     per row (each event's slice is capped, so appending to it copies),
//     and event ids are cut from one string per group of rows.
func scanEvents(rows pgx.Rows, n int) ([]persistence.RecordedEvent, error) {
	defer rows.Close()
	var (
		out                     = make([]persistence.RecordedEvent, 0, n)
		stream, typ, meta, data pgtype.DriverBytes
		schemaVersion           int32
		in                      = interner{}
		slab                    []byte
		prevMeta                []byte
		prevMD                  map[string]string
		id                      pgtype.DriverBytes
		ids                     idSlab
		position, version       int64
		recordedAt              time.Time
		// One destination list for every row: a fresh one, or a row
		// variable whose address is taken, would be an allocation per row.
		dest = []any{&position, &stream, &version, &id, &typ, &schemaVersion, &data, &meta, &recordedAt}
	)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		e := persistence.RecordedEvent{GlobalPosition: position, Version: version, RecordedAt: recordedAt}
		e.StreamID, e.Type, e.SchemaVersion = in.intern(stream), in.intern(typ), int(schemaVersion)
		e.RecordedAt = e.RecordedAt.UTC()
		if len(data) > slabSize/4 {
			e.Data = bytes.Clone(data)
		} else {
			if slab == nil || cap(slab)-len(slab) < len(data) {
				slab = make([]byte, 0, slabSize)
			}
			start := len(slab)
			slab = append(slab, data...)
			e.Data = slab[start:len(slab):len(slab)]
		}
		if prevMD != nil && bytes.Equal(meta, prevMeta) {
			e.Metadata = maps.Clone(prevMD) // strings are immutable: sharing them is safe
		} else {
			md := decodeMetadata(meta, in, prevMD)
			e.Metadata, prevMD, prevMeta = md, md, append(prevMeta[:0], meta...)
		}
		out = append(out, e)
		ids.add(out, id)
	}
	ids.flush(out)
	return out, rows.Err()
}

// idSlab gives the last rows of out their event ids, cut from one string
// per group of rows instead of one allocation per row.
type idSlab struct {
	buf   []byte
	ends  []int
	first int // index in out of the row ends[0] belongs to
}

func (s *idSlab) add(out []persistence.RecordedEvent, id []byte) {
	s.buf = append(s.buf, id...)
	s.ends = append(s.ends, len(s.buf))
	if len(s.buf) >= 16<<10 {
		s.flush(out)
	}
}

func (s *idSlab) flush(out []persistence.RecordedEvent) {
	all, start := string(s.buf), 0
	for i, end := range s.ends {
		out[s.first+i].ID = all[start:end]
		start = end
	}
	s.first += len(s.ends)
	s.buf, s.ends = s.buf[:0], s.ends[:0]
}

// slabSize is the size of the shared buffers event data is copied into.
const slabSize = 64 << 10

// interner hands out one string per distinct byte sequence, up to a bound.
type interner map[string]string

func (in interner) intern(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(in) < 4096 {
		in[s] = s
	}
	return s
}

// decodeMetadata decodes a JSON object of strings; empty objects and NULL
// give nil. Objects without escapes — the usual ids and trace headers — take
// a fast path; anything else goes through encoding/json.
//
// The store writes only objects of strings, but the column is jsonb, and a
// row written by other means may hold anything: one such row must not make
// every read over it fail (the relay and projections would stop there for
// good). A value that is not a string is read as its JSON text (null as
// ""), and metadata that is not an object as the single key
// UnreadableMetadata.
func decodeMetadata(b []byte, in interner, prev map[string]string) map[string]string {
	if len(b) == 0 {
		return nil
	}
	m, ok := decodeFlat(b, in, prev)
	if !ok {
		m = decodeLenient(b)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// UnreadableMetadata is the metadata key under which a read returns stored
// metadata that is not a JSON object (its JSON text, cut to 1 KiB).
const UnreadableMetadata = "unreadable-metadata"

func decodeLenient(b []byte) map[string]string {
	var strs map[string]string
	if err := json.Unmarshal(b, &strs); err == nil {
		return strs
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return map[string]string{UnreadableMetadata: string(b[:min(len(b), 1<<10)])}
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(v)
		}
		out[k] = s
	}
	return out
}

// decodeFlat parses {"k": "v", ...} where strings are valid UTF-8 without
// backslashes or control characters. It reports false for anything else,
// leaving it to encoding/json. Keys are interned; a value equal to prev's
// value for the same key is shared with prev.
func decodeFlat(b []byte, in interner, prev map[string]string) (map[string]string, bool) {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			i++
		}
	}
	str := func() ([]byte, bool) {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		start := i + 1
		for j := start; j < len(b); j++ {
			switch c := b[j]; {
			case c == '\\' || c < 0x20:
				return nil, false
			case c == '"':
				if !utf8.Valid(b[start:j]) {
					return nil, false
				}
				i = j + 1
				return b[start:j], true
			}
		}
		return nil, false
	}
	skip()
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	m := make(map[string]string, 4)
	skip()
	if i < len(b) && b[i] == '}' {
		i++
		skip()
		return m, i == len(b)
	}
	for {
		skip()
		kb, ok := str()
		if !ok {
			return nil, false
		}
		k := in.intern(kb)
		skip()
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i++
		skip()
		vb, ok := str()
		if !ok {
			return nil, false
		}
		v, same := prev[k]
		if !same || v != string(vb) { // no allocation for the comparison
			v = string(vb)
		}
		m[k] = v
		skip()
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			i++
			skip()
			return m, i == len(b)
		default:
			return nil, false
		}
	}
}

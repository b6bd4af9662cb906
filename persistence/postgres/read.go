package postgres

import (
	"encoding/json"
	"fmt"
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
// can: stream ids and type names, which repeat, are interned, and metadata
// is decoded by hand.
func scanEvents(rows pgx.Rows, n int) ([]persistence.RecordedEvent, error) {
	defer rows.Close()
	var (
		out               = make([]persistence.RecordedEvent, 0, n)
		stream, typ, meta pgtype.DriverBytes
		schemaVersion     int32
		names             = map[string]string{}
	)
	intern := func(b []byte) string {
		if s, ok := names[string(b)]; ok {
			return s
		}
		s := string(b)
		if len(names) < 4096 {
			names[s] = s
		}
		return s
	}
	for rows.Next() {
		var e persistence.RecordedEvent
		if err := rows.Scan(&e.GlobalPosition, &stream, &e.Version, &e.ID, &typ, &schemaVersion,
			&e.Data, &meta, &e.RecordedAt); err != nil {
			return nil, err
		}
		e.StreamID, e.Type, e.SchemaVersion = intern(stream), intern(typ), int(schemaVersion)
		e.RecordedAt = e.RecordedAt.UTC()
		if e.Data == nil {
			e.Data = []byte{}
		}
		md, err := decodeMetadata(meta)
		if err != nil {
			return nil, fmt.Errorf("event %q: metadata: %w", e.ID, err)
		}
		e.Metadata = md
		out = append(out, e)
	}
	return out, rows.Err()
}

// decodeMetadata decodes a JSON object of strings; empty objects and NULL
// give nil. Objects without escapes — the usual ids and trace headers — take
// a fast path; anything else goes through encoding/json.
func decodeMetadata(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	m, ok := decodeFlat(b)
	if !ok {
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// decodeFlat parses {"k": "v", ...} where strings are valid UTF-8 without
// backslashes or control characters. It reports false for anything else,
// leaving it to encoding/json.
func decodeFlat(b []byte) (map[string]string, bool) {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			i++
		}
	}
	str := func() (string, bool) {
		if i >= len(b) || b[i] != '"' {
			return "", false
		}
		start := i + 1
		for j := start; j < len(b); j++ {
			switch c := b[j]; {
			case c == '\\' || c < 0x20:
				return "", false
			case c == '"':
				if !utf8.Valid(b[start:j]) {
					return "", false
				}
				i = j + 1
				return string(b[start:j]), true
			}
		}
		return "", false
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
		k, ok := str()
		if !ok {
			return nil, false
		}
		skip()
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i++
		skip()
		v, ok := str()
		if !ok {
			return nil, false
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

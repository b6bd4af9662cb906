package postgres

import (
	"encoding/json"
	"maps"
	"testing"
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
		got, err := decodeMetadata([]byte(tt.in))
		if err != nil || !maps.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("decodeMetadata(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`{`, `{"a"}`, `{"a": 1`, `[1]`, `{"a": "b",}`, `{"a": "b"} x`} {
		if _, err := decodeMetadata([]byte(bad)); err == nil {
			t.Errorf("decodeMetadata(%q): no error", bad)
		}
	}
}

// FuzzDecodeMetadata checks the fast path against encoding/json.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{`{"a": "b"}`, `{}`, `{"k":"v","x":"y"}`, `{"a": "\u0041"}`, `{"a": 1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeFlat(b)
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

package postgres

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/composable-go/composable/persistence"
)

func TestMetadataJSON(t *testing.T) {
	for _, md := range []map[string]string{
		{"a": "b"},
		{"z": "1", "a": "2", "m": ""},
		{"quote\"": "back\\slash", "ctl": "\x01\x1f\n\r\t", "ü": "日本 \u2028"},
		{"k1": "v", "k2": "v", "k3": "v", "k4": "v", "k5": "v", "k6": "v", "k7": "v", "k8": "v", "k9": "v"}, // more keys than the stack buffer
	} {
		text := metadataJSON(md)
		var got map[string]string
		if err := json.Unmarshal([]byte(text), &got); err != nil || !maps.Equal(got, md) {
			t.Errorf("metadataJSON(%v) = %s: decodes to %v, %v", md, text, got, err)
		}
	}
	if got := metadataJSON(map[string]string{"b": "2", "a": "1"}); got != `{"a":"1","b":"2"}` {
		t.Errorf("keys not sorted: %s", got)
	}
}

func TestEncodeMetadataSharesEqualRuns(t *testing.T) {
	md := map[string]string{"command-id": "c1"}
	events := []persistence.EventData{{Metadata: md}, {Metadata: maps.Clone(md)}, {}, {Metadata: map[string]string{"x": "y"}}}
	got := make([]string, len(events))
	encodeMetadata(got, events)
	want := []string{`{"command-id":"c1"}`, `{"command-id":"c1"}`, "", `{"x":"y"}`}
	if !slices.Equal(got, want) {
		t.Fatalf("encodeMetadata = %q, want %q", got, want)
	}
}

// FuzzMetadataJSON checks the encoder against encoding/json's decoder for
// any text the store accepts (valid UTF-8 without NUL).
func FuzzMetadataJSON(f *testing.F) {
	f.Add("k", "v", "k2", "\"\\\n")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		md := map[string]string{k1: v1, k2: v2}
		for k, v := range md {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				return
			}
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(metadataJSON(md)), &got); err != nil || !maps.Equal(got, md) {
			t.Fatalf("metadataJSON(%q) = %s: decodes to %q, %v", md, metadataJSON(md), got, err)
		}
	})
}

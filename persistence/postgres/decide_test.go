package postgres

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
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
	encodeMetadata(got, events, nil)
	want := []string{`{"command-id":"c1"}`, `{"command-id":"c1"}`, "", `{"x":"y"}`}
	if !slices.Equal(got, want) {
		t.Fatalf("encodeMetadata = %q, want %q", got, want)
	}
}

// TestMetadataCacheFollowsTheMapsContent: the cache answers by content, so
// a map changed after it was encoded, or equal maps that are different
// values, get the right JSON; more kinds than it holds still encode right.
func TestMetadataCacheFollowsTheMapsContent(t *testing.T) {
	var c metadataCache
	md := map[string]string{"command-type": "a"}
	if got := c.json(md); got != `{"command-type":"a"}` {
		t.Fatal(got)
	}
	md["command-type"] = "b" // the caller reuses its map
	if got := c.json(md); got != `{"command-type":"b"}` {
		t.Fatalf("after the map changed: %s", got)
	}
	md["extra"] = "x"
	if got := c.json(md); got != `{"command-type":"b","extra":"x"}` {
		t.Fatalf("after a key was added: %s", got)
	}
	for i := range 20 { // more kinds than entries, each asked for twice
		m := map[string]string{"k": strconv.Itoa(i)}
		want := `{"k":"` + strconv.Itoa(i) + `"}`
		if a, b := c.json(m), c.json(maps.Clone(m)); a != want || b != want {
			t.Fatalf("kind %d: %s, %s", i, a, b)
		}
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

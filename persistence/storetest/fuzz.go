package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// Fuzz feeds arbitrary stream ids, event types and metadata through Append
// and then Load and ReadAll of the same store: input the store refuses is
// refused with an ErrInvalidInput error and writes nothing; input it takes
// reads back exactly; and whatever came before, the store keeps serving a
// well-formed append. Call it from a Fuzz function:
//
//	func FuzzAppendLoad(f *testing.F) { storetest.Fuzz(f, store) }
//
// store is one store for the whole run (fuzzing runs many inputs).
func Fuzz(f *testing.F, store persistence.EventStore) {
	for _, seed := range [][4]string{
		{"order/1", "order.placed", "correlation-id", "c-1"},
		{"", "t", "k", "v"},
		{"a\x00b", "t", "k", "v"},
		{"s", "a\xffb", "k", "v"},
		{"s", "t", "k\x00", "v"},
		{"s", "t", "", ""},
		{"Order Service/ü ✓", "t", "\"quoted\"", "\\back\\slash"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	var n int
	// versions holds each stream's version as this run appended it: the
	// store is shared by every input, and reading a whole stream before
	// each append would make the run slower with every input.
	versions := map[string]int64{}
	f.Fuzz(func(t *testing.T, stream, typ, key, value string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n++
		id := fmt.Sprintf("fuzz-%d-%d", time.Now().UnixNano(), n)
		md := map[string]string{key: value}
		res, err := store.Append(ctx, stream, persistence.Any, persistence.EventData{ID: id, Type: typ, Data: []byte(value), Metadata: md})
		switch {
		case err != nil && !errors.Is(err, persistence.ErrInvalidInput):
			t.Fatalf("Append(%q, %q, %q=%q): %v, want nil or an ErrInvalidInput", stream, typ, key, value, err)
		case err != nil:
			if added := newer(ctx, t, store, stream, versions[stream]); added != 0 {
				t.Fatalf("a refused append added %d events to %q", added, stream)
			}
		default:
			versions[stream] = res.Version
			got, err := store.Load(ctx, stream, res.Version)
			if err != nil || len(got) != 1 {
				t.Fatalf("Load(%q) after an append: %d events, %v", stream, len(got), err)
			}
			e := got[0]
			if e.ID != id || e.Type != typ || string(e.Data) != value || e.StreamID != stream || !sameMetadata(e.Metadata, md) {
				t.Fatalf("read back %+v, want stream %q type %q metadata %q", e, stream, typ, md)
			}
			page, err := store.ReadAll(ctx, res.Position-1, 1)
			if err != nil || len(page) != 1 || page[0].ID != id {
				t.Fatalf("ReadAll at %d: %v, %v", res.Position, page, err)
			}
		}
		if _, err := store.Append(ctx, "fuzz/control", persistence.Any, persistence.EventData{ID: id + "-control", Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatalf("a well-formed append after %q/%q: %v", stream, typ, err)
		}
	})
}

// sameMetadata compares metadata as stores return it: empty is nil.
func sameMetadata(got, want map[string]string) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return maps.Equal(got, want)
}

// newer returns how many events stream holds after version.
func newer(ctx context.Context, t *testing.T, store persistence.EventStore, stream string, version int64) int {
	t.Helper()
	if !persistence.ValidStreamID(stream) {
		return 0 // no store can hold it, nor be asked for it
	}
	events, err := store.Load(ctx, stream, version+1)
	if err != nil && !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("Load(%q): %v", stream, err)
	}
	return len(events)
}

// Package storetest is the conformance suite every event store must pass.
//
// A backend's test calls [Run] with a factory that returns a fresh, empty
// store for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return memory.New() })
//	}
//
// The suite covers optimistic concurrency (every off-by-one), atomic
// multi-event appends, racing writers, duplicate event ids, the round trip of
// every field, paging, stream isolation, snapshots, the order of the global
// feed under 100 concurrent writers with a reader following along, catch-up
// subscriptions, durable timers written atomically with events, and the
// rejection of bad input with nothing written.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// Store is what the suite exercises: an event store that keeps snapshots
// and durable timers.
type Store interface {
	persistence.EventStore
	persistence.SnapshotStore
	persistence.TimerStore
}

// Factory returns a new, empty store for one subtest. It registers any
// cleanup with t.Cleanup.
type Factory func(t *testing.T) Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, Store)
	}{
		{"RoundTripsEveryField", testRoundTrip},
		{"ExpectedVersion", testExpectedVersion},
		{"AtomicMultiEventAppend", testAtomicAppend},
		{"RacingWritersExactlyOneWins", testRacingWriters},
		{"DuplicateEventID", testDuplicateEventID},
		{"LoadFromVersion", testLoadFromVersion},
		{"ReadAllPaging", testReadAllPaging},
		{"StreamsAreIsolated", testIsolation},
		{"Snapshots", testSnapshots},
		{"ConcurrentSnapshotsKeepTheNewest", testConcurrentSnapshots},
		{"BadInputWritesNothing", testBadInput},
		{"CancelledContextWritesNothing", testCancelledContext},
		{"GlobalFeedUnderConcurrentWriters", testGlobalFeedOrder},
		{"SubscribeCatchesUpThenFollows", testSubscribe},
		{"NotifierWakesSubscribers", testNotifier},
		{"HeadIsTheLastPosition", testHead},
		{"TimersRoundTrip", testTimersRoundTrip},
		{"TimerChangesApplyInOrder", testTimerChangesApplyInOrder},
		{"TimersAreAtomicWithEvents", testTimersAreAtomicWithEvents},
		{"DeleteTimerMatchesTheFiring", testDeleteTimerMatchesTheFiring},
		{"ConditionalCancels", testConditionalCancels},
		{"TimersOfRacingWriters", testTimersOfRacingWriters},
		{"MarksAreListedByName", testMarks},
		{"TimersPageInTimerOrder", testTimersPageInTimerOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ev returns an event with a unique id derived from name.
func ev(name string) persistence.EventData {
	return persistence.EventData{ID: "id-" + name, Type: "test.event", SchemaVersion: 1, Data: []byte(name)}
}

func evs(prefix string, n int) []persistence.EventData {
	out := make([]persistence.EventData, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func mustAppend(t *testing.T, s Store, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) persistence.AppendResult {
	t.Helper()
	res, err := s.Append(ctxFor(t), stream, expected, events...)
	if err != nil {
		t.Fatalf("Append(%q, %d, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

func load(t *testing.T, s Store, stream string) []persistence.RecordedEvent {
	t.Helper()
	got, err := s.Load(ctxFor(t), stream, 1)
	if errors.Is(err, persistence.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("Load(%q): %v", stream, err)
	}
	return got
}

func readAll(t *testing.T, s Store) []persistence.RecordedEvent {
	t.Helper()
	var all []persistence.RecordedEvent
	after := int64(0)
	for {
		page, err := s.ReadAll(ctxFor(t), after, 1000)
		if err != nil {
			t.Fatalf("ReadAll(%d): %v", after, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].GlobalPosition
	}
}

func testRoundTrip(t *testing.T, s Store) {
	events := []persistence.EventData{
		{
			ID: "evt-ünïcødé-1", Type: "order.placed", SchemaVersion: 3,
			Data: []byte{0, 1, 2, 255, 0},
			Metadata: map[string]string{
				"correlation": "corr-1", "trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"unicode": "日本語 ✓ \"quoted\" \\ back", "empty": "",
			},
		},
		{ID: "evt-2", Type: "order.shipped", SchemaVersion: 1, Data: []byte{}},
		{ID: "evt-3", Type: "order.closed", SchemaVersion: 0, Data: []byte("x"), Metadata: map[string]string{}},
	}
	stream := "order/ünï-42"
	before := make([]persistence.EventData, len(events))
	for i, e := range events {
		before[i] = e
		before[i].Data, before[i].Metadata = slices.Clone(e.Data), maps.Clone(e.Metadata)
	}
	res := mustAppend(t, s, stream, persistence.NoStream, events...)
	for i := range events { // callers may share Data and Metadata between appends
		if !slices.Equal(events[i].Data, before[i].Data) || !maps.Equal(events[i].Metadata, before[i].Metadata) {
			t.Errorf("Append modified its input event %d: %+v", i, events[i])
		}
	}
	if res.Version != 3 {
		t.Fatalf("AppendResult.Version = %d, want 3", res.Version)
	}
	got := load(t, s, stream)
	if len(got) != 3 {
		t.Fatalf("loaded %d events, want 3", len(got))
	}
	if res.Position != got[2].GlobalPosition {
		t.Errorf("AppendResult.Position = %d, want the last event's position %d", res.Position, got[2].GlobalPosition)
	}
	for i, g := range got {
		want := events[i]
		if len(want.Metadata) == 0 {
			want.Metadata = nil
		}
		if g.ID != want.ID || g.Type != want.Type || g.SchemaVersion != want.SchemaVersion ||
			!slices.Equal(g.Data, want.Data) || !maps.Equal(g.Metadata, want.Metadata) {
			t.Errorf("event %d = %+v, want %+v", i, g.EventData, want)
		}
		if g.Metadata != nil && len(g.Metadata) == 0 {
			t.Errorf("event %d: empty metadata must come back as nil", i)
		}
		if g.Data == nil {
			t.Errorf("event %d: Data is nil, want an empty slice", i)
		}
		if g.StreamID != stream || g.Version != int64(i+1) {
			t.Errorf("event %d: stream %q version %d", i, g.StreamID, g.Version)
		}
		if g.RecordedAt.IsZero() || g.RecordedAt.Location() != time.UTC || g.RecordedAt.Nanosecond()%1000 != 0 {
			t.Errorf("event %d: RecordedAt %v must be set, UTC, microsecond precision", i, g.RecordedAt)
		}
		if i > 0 && g.GlobalPosition <= got[i-1].GlobalPosition {
			t.Errorf("positions not increasing: %d then %d", got[i-1].GlobalPosition, g.GlobalPosition)
		}
	}
	// Mutating what was passed in or returned must not change the store.
	events[0].Data[1] = 9
	events[0].Metadata["correlation"] = "changed"
	got[0].Data[2] = 9
	got[0].Metadata["trace"] = "changed"
	again := load(t, s, stream)
	if again[0].Data[1] != 1 || again[0].Data[2] != 2 || again[0].Metadata["correlation"] != "corr-1" || again[0].Metadata["trace"] == "changed" {
		t.Errorf("store shares memory with callers: %+v", again[0].EventData)
	}
}

func testExpectedVersion(t *testing.T, s Store) {
	const stream = "account/1"
	mustAppend(t, s, stream, persistence.NoStream, evs("seed", 2)...) // version 2
	tests := []struct {
		name     string
		expected persistence.ExpectedVersion
		ok       bool
	}{
		{"NoStream on an existing stream", persistence.NoStream, false},
		{"one behind", 1, false},
		{"one ahead", 3, false},
		{"far ahead", 100, false},
		{"exact", 2, true},
		{"Any", persistence.Any, true},
	}
	version := int64(2)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := readAll(t, s)
			_, err := s.Append(ctxFor(t), stream, tt.expected, ev(fmt.Sprintf("ev-%d", i)))
			if tt.ok {
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				version++
				return
			}
			var cerr *persistence.ConcurrencyError
			if !errors.Is(err, persistence.ErrConcurrency) || !errors.As(err, &cerr) {
				t.Fatalf("err = %v, want a *ConcurrencyError", err)
			}
			if cerr.Stream != stream || cerr.Expected != tt.expected || cerr.Actual != version {
				t.Errorf("ConcurrencyError = %+v, want stream %q expected %d actual %d", cerr, stream, tt.expected, version)
			}
			if after := readAll(t, s); len(after) != len(before) {
				t.Errorf("a refused append wrote %d events", len(after)-len(before))
			}
		})
	}
	if got := load(t, s, stream); int64(len(got)) != version {
		t.Fatalf("stream has %d events, want %d", len(got), version)
	}
	// A new stream at a positive expected version is a conflict too.
	_, err := s.Append(ctxFor(t), "account/new", 1, ev("new"))
	var cerr *persistence.ConcurrencyError
	if !errors.As(err, &cerr) || cerr.Actual != 0 {
		t.Fatalf("append at version 1 to a new stream: %v", err)
	}
}

func testAtomicAppend(t *testing.T, s Store) {
	mustAppend(t, s, "a", persistence.NoStream, ev("taken"))
	batch := []persistence.EventData{ev("b1"), ev("b2"), ev("taken")}
	_, err := s.Append(ctxFor(t), "b", persistence.NoStream, batch...)
	if !errors.Is(err, persistence.ErrDuplicateEvent) {
		t.Fatalf("err = %v, want ErrDuplicateEvent", err)
	}
	if got := load(t, s, "b"); len(got) != 0 {
		t.Fatalf("a failed multi-event append wrote %d events", len(got))
	}
	res := mustAppend(t, s, "b", persistence.NoStream, evs("ok", 5)...)
	got := load(t, s, "b")
	if res.Version != 5 || len(got) != 5 {
		t.Fatalf("version %d, %d events", res.Version, len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Version != got[i-1].Version+1 || got[i].GlobalPosition <= got[i-1].GlobalPosition {
			t.Fatalf("events of one append not contiguous in order: %+v then %+v", got[i-1], got[i])
		}
	}
}

func testRacingWriters(t *testing.T, s Store) {
	const writers = 20
	mustAppend(t, s, "race", persistence.NoStream, ev("start"))
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		wins, conflict int
		others         []error
	)
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Append(ctxFor(t), "race", 1, evs(fmt.Sprintf("w%d", w), 2)...)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, persistence.ErrConcurrency):
				conflict++
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 || conflict != writers-1 || len(others) > 0 {
		t.Fatalf("wins %d, conflicts %d, other errors %v; want exactly one winner", wins, conflict, others)
	}
	if got := load(t, s, "race"); len(got) != 3 {
		t.Fatalf("stream has %d events, want 3", len(got))
	}
}

func testDuplicateEventID(t *testing.T, s Store) {
	first := ev("once")
	mustAppend(t, s, "dup", persistence.NoStream, first)
	tests := []struct {
		name     string
		stream   string
		expected persistence.ExpectedVersion
		events   []persistence.EventData
	}{
		// The retry-after-timeout case: same stream, same expected version.
		{"retried append", "dup", persistence.NoStream, []persistence.EventData{first}},
		{"same stream, next version", "dup", 1, []persistence.EventData{first}},
		{"another stream", "other", persistence.NoStream, []persistence.EventData{first}},
		{"twice in one append", "third", persistence.NoStream, []persistence.EventData{ev("x"), ev("x")}},
		{"twice in a long append", "fourth", persistence.NoStream, append(evs("fourth", 12), ev("fourth-3"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := readAll(t, s)
			_, err := s.Append(ctxFor(t), tt.stream, tt.expected, tt.events...)
			var derr *persistence.DuplicateEventError
			if !errors.Is(err, persistence.ErrDuplicateEvent) || !errors.As(err, &derr) || derr.ID == "" {
				t.Fatalf("err = %v, want a *DuplicateEventError naming the id", err)
			}
			if after := readAll(t, s); len(after) != len(before) {
				t.Fatalf("wrote %d events", len(after)-len(before))
			}
		})
	}
}

func testLoadFromVersion(t *testing.T, s Store) {
	mustAppend(t, s, "s", persistence.NoStream, evs("s", 10)...)
	tests := []struct {
		from      int64
		wantFirst int64
		wantN     int
	}{{-5, 1, 10}, {0, 1, 10}, {1, 1, 10}, {4, 4, 7}, {10, 10, 1}, {11, 0, 0}, {1000, 0, 0}}
	for _, tt := range tests {
		got, err := s.Load(ctxFor(t), "s", tt.from)
		if err != nil {
			t.Fatalf("Load(from %d): %v", tt.from, err)
		}
		if len(got) != tt.wantN || (tt.wantN > 0 && got[0].Version != tt.wantFirst) {
			t.Errorf("Load(from %d): %d events starting at %v, want %d from %d", tt.from, len(got), firstVersion(got), tt.wantN, tt.wantFirst)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Version != got[i-1].Version+1 {
				t.Errorf("Load(from %d): versions out of order", tt.from)
			}
		}
	}
	for _, missing := range []string{"missing", "bad\x00id", "bad\xffid", ""} {
		if _, err := s.Load(ctxFor(t), missing, 1); !errors.Is(err, persistence.ErrStreamNotFound) {
			t.Errorf("Load(%q) err = %v, want ErrStreamNotFound", missing, err)
		}
		if _, ok, err := s.LoadSnapshot(ctxFor(t), missing); ok || err != nil {
			t.Errorf("LoadSnapshot(%q) = %v, %v; want not found", missing, ok, err)
		}
	}
}

func firstVersion(es []persistence.RecordedEvent) any {
	if len(es) == 0 {
		return "none"
	}
	return es[0].Version
}

func testReadAllPaging(t *testing.T, s Store) {
	for i := range 5 {
		mustAppend(t, s, fmt.Sprintf("p-%d", i), persistence.NoStream, evs(fmt.Sprintf("p%d", i), 5)...)
	}
	all := readAll(t, s)
	if len(all) != 25 {
		t.Fatalf("feed has %d events, want 25", len(all))
	}
	for _, limit := range []int{1, 3, 7, 25, 100} {
		var got []persistence.RecordedEvent
		after := int64(0)
		for {
			page, err := s.ReadAll(ctxFor(t), after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].GlobalPosition
		}
		if !sameIDs(got, all) {
			t.Errorf("limit %d: paged feed differs from the whole feed", limit)
		}
	}
	mid := all[9].GlobalPosition
	page, err := s.ReadAll(ctxFor(t), mid, 100)
	if err != nil || len(page) != 15 || page[0].ID != all[10].ID {
		t.Errorf("ReadAll(after %d) = %d events (%v), want the 15 after it", mid, len(page), err)
	}
	if page, err := s.ReadAll(ctxFor(t), -1, 100); err != nil || len(page) != 25 {
		t.Errorf("ReadAll(after -1) = %d events, %v; want the whole feed", len(page), err)
	}
	if page, err := s.ReadAll(ctxFor(t), all[24].GlobalPosition, 10); err != nil || len(page) != 0 {
		t.Errorf("ReadAll(after the head) = %d events, %v", len(page), err)
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.ReadAll(ctxFor(t), 0, limit); !errors.Is(err, persistence.ErrBadLimit) || !errors.Is(err, persistence.ErrInvalidInput) {
			t.Errorf("ReadAll(limit %d) err = %v, want ErrBadLimit", limit, err)
		}
	}
	// Extreme positions and limits read what there is, and never panic.
	if page, err := s.ReadAll(ctxFor(t), mid, math.MaxInt); err != nil || len(page) != 15 {
		t.Errorf("ReadAll(limit MaxInt) = %d events, %v; want 15", len(page), err)
	}
	if page, err := s.ReadAll(ctxFor(t), math.MaxInt64, math.MaxInt); err != nil || len(page) != 0 {
		t.Errorf("ReadAll(after MaxInt64) = %d events, %v", len(page), err)
	}
	if page, err := s.ReadAll(ctxFor(t), math.MinInt64, 5); err != nil || len(page) != 5 {
		t.Errorf("ReadAll(after MinInt64) = %d events, %v; want 5", len(page), err)
	}
}

func sameIDs(a, b []persistence.RecordedEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].GlobalPosition != b[i].GlobalPosition {
			return false
		}
	}
	return true
}

func testIsolation(t *testing.T, s Store) {
	mustAppend(t, s, "order/1", persistence.NoStream, evs("o1", 3)...)
	mustAppend(t, s, "order/10", persistence.NoStream, evs("o10", 2)...)
	mustAppend(t, s, "order/1", 3, ev("o1-more"))
	if got := load(t, s, "order/1"); len(got) != 4 || got[3].ID != "id-o1-more" {
		t.Fatalf("order/1 has %d events", len(got))
	}
	for _, e := range load(t, s, "order/10") {
		if e.StreamID != "order/10" || !strings.HasPrefix(e.ID, "id-o10") {
			t.Fatalf("order/10 holds a foreign event %+v", e)
		}
	}
	if _, err := s.Load(ctxFor(t), "order/", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("prefix of a stream id matched: %v", err)
	}
}

func testSnapshots(t *testing.T, s Store) {
	ctx := ctxFor(t)
	if _, ok, err := s.LoadSnapshot(ctx, "snap"); ok || err != nil {
		t.Fatalf("missing snapshot: ok %v, err %v", ok, err)
	}
	save := func(v int64, data string) {
		t.Helper()
		if err := s.SaveSnapshot(ctx, persistence.Snapshot{StreamID: "snap", Version: v, SchemaVersion: 2, Data: []byte(data)}); err != nil {
			t.Fatalf("SaveSnapshot(v%d): %v", v, err)
		}
	}
	check := func(v int64, data string) {
		t.Helper()
		got, ok, err := s.LoadSnapshot(ctx, "snap")
		if err != nil || !ok || got.Version != v || string(got.Data) != data || got.SchemaVersion != 2 || got.StreamID != "snap" {
			t.Fatalf("LoadSnapshot = %+v, %v, %v; want version %d data %q", got, ok, err, v, data)
		}
	}
	save(5, "five")
	check(5, "five")
	save(10, "ten")
	check(10, "ten")
	save(7, "seven") // older: ignored
	check(10, "ten")
	save(10, "ten again") // same version: overwrites
	check(10, "ten again")
	if _, ok, _ := s.LoadSnapshot(ctx, "other"); ok {
		t.Fatal("snapshot leaked to another stream")
	}
	for _, bad := range []persistence.Snapshot{
		{StreamID: "", Version: 1},
		{StreamID: "x", Version: 0},
		{StreamID: "x\x00y", Version: 1},
		{StreamID: "x", Version: 1, Data: make([]byte, persistence.DefaultMaxEventSize+1)},
		{StreamID: "x", Version: 1, SchemaVersion: math.MaxInt32 + 1},
	} {
		if err := s.SaveSnapshot(ctx, bad); !errors.Is(err, persistence.ErrInvalidInput) {
			t.Errorf("SaveSnapshot(%q, v%d, %d bytes) err = %v, want ErrInvalidInput", bad.StreamID, bad.Version, len(bad.Data), err)
		}
	}
}

// testConcurrentSnapshots saves many versions of a few streams' snapshots
// at once, in no order (stores may write them in batches): each stream
// ends with its newest.
func testConcurrentSnapshots(t *testing.T, s Store) {
	ctx := ctxFor(t)
	const streams, versions = 4, 40
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range streams * versions {
				k := (i*7 + w*13) % (streams * versions) // each writer its own order
				stream, v := fmt.Sprint("snap-", k%streams), int64(k/streams+1)
				snap := persistence.Snapshot{StreamID: stream, Version: v, SchemaVersion: 1, Data: []byte(fmt.Sprint("v", v))}
				if err := s.SaveSnapshot(ctx, snap); err != nil {
					t.Errorf("SaveSnapshot(%s v%d): %v", stream, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range streams {
		got, ok, err := s.LoadSnapshot(ctx, fmt.Sprint("snap-", i))
		if err != nil || !ok || got.Version != versions || string(got.Data) != fmt.Sprint("v", versions) {
			t.Fatalf("snap-%d = %+v, %v, %v; want version %d", i, got, ok, err, versions)
		}
	}
}

// manyBig returns n events, each exactly at the size limit, sharing one
// buffer.
func manyBig(n int) []persistence.EventData {
	data := make([]byte, persistence.DefaultMaxEventSize)
	out := make([]persistence.EventData, n)
	for i := range out {
		out[i] = persistence.EventData{ID: fmt.Sprint("big-", i), Type: "t", Data: data}
	}
	return out
}

func testBadInput(t *testing.T, s Store) {
	big := ev("big")
	big.Data = make([]byte, persistence.DefaultMaxEventSize+1)
	justFits := ev("fits")
	justFits.Data = make([]byte, persistence.DefaultMaxEventSize)
	withField := func(f func(*persistence.EventData)) persistence.EventData {
		e := ev("field")
		f(&e)
		return e
	}
	tests := []struct {
		name     string
		stream   string
		expected persistence.ExpectedVersion
		events   []persistence.EventData
		want     error
	}{
		{"empty stream id", "", persistence.Any, []persistence.EventData{ev("a")}, persistence.ErrEmptyStreamID},
		{"NUL in stream id", "a\x00b", persistence.Any, []persistence.EventData{ev("a")}, persistence.ErrInvalidText},
		{"invalid UTF-8 in stream id", "a\xffb", persistence.Any, []persistence.EventData{ev("a")}, persistence.ErrInvalidText},
		{"no events", "s", persistence.Any, nil, persistence.ErrNoEvents},
		{"expected version below Any", "s", -2, []persistence.EventData{ev("a")}, persistence.ErrBadExpectedVersion},
		{"empty event id", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.ID = "" })}, persistence.ErrEmptyEventID},
		{"empty event type", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Type = "" })}, persistence.ErrEmptyEventType},
		{"NUL in event type", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Type = "a\x00" })}, persistence.ErrInvalidText},
		{"NUL in metadata value", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Metadata = map[string]string{"k": "v\x00"} })}, persistence.ErrInvalidText},
		{"NUL in metadata key", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Metadata = map[string]string{"k\x00": "v"} })}, persistence.ErrInvalidText},
		{"negative schema version", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.SchemaVersion = -1 })}, persistence.ErrBadVersion},
		{"schema version beyond int32", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.SchemaVersion = math.MaxInt32 + 1 })}, persistence.ErrBadVersion},
		{"invalid UTF-8 in event id", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.ID = "a\xff" })}, persistence.ErrInvalidText},
		{"invalid UTF-8 in metadata", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Metadata = map[string]string{"k": "\xff"} })}, persistence.ErrInvalidText},
		{"event over the size limit", "s", persistence.Any, []persistence.EventData{ev("ok"), big}, persistence.ErrEventTooLarge},
		{"append over the total size limit", "s", persistence.Any, manyBig(persistence.AppendSizeFactor + 1), persistence.ErrAppendTooLarge},
		{"stream id over the length limit", strings.Repeat("s", persistence.MaxIDLength+1), persistence.Any, []persistence.EventData{ev("a")}, persistence.ErrTooLong},
		{"event id over the length limit", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.ID = strings.Repeat("i", 10<<10) })}, persistence.ErrTooLong},
		{"event type over the length limit", "s", persistence.Any, []persistence.EventData{withField(func(e *persistence.EventData) { e.Type = strings.Repeat("t", persistence.MaxIDLength+1) })}, persistence.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(ctxFor(t), tt.stream, tt.expected, tt.events...)
			if !errors.Is(err, tt.want) || !errors.Is(err, persistence.ErrInvalidInput) {
				t.Fatalf("err = %v, want %v (an ErrInvalidInput)", err, tt.want)
			}
			if len(err.Error()) > 512 {
				t.Fatalf("the error quotes too much: %d bytes", len(err.Error()))
			}
			if got := readAll(t, s); len(got) != 0 {
				t.Fatalf("refused input wrote %d events", len(got))
			}
		})
	}
	// NUL bytes are fine in Data (bytea), and an event of exactly the limit fits.
	mustAppend(t, s, "s", persistence.NoStream, justFits, withField(func(e *persistence.EventData) { e.Data = []byte{0, 0} }))
}

func testCancelledContext(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "c", persistence.NoStream, ev("c")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	if got := readAll(t, s); len(got) != 0 {
		t.Fatalf("a cancelled append wrote %d events", len(got))
	}
	if _, err := s.ReadAll(ctx, 0, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAll with a cancelled context: %v", err)
	}
}

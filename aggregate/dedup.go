package aggregate

import (
	"encoding/json"
	"fmt"

	"github.com/composable-go/composable/persistence"
)

// commandRecord remembers what a command with an id appended.
type commandRecord struct {
	ID       string `json:"id"`
	Version  int64  `json:"v"` // stream version after its last event
	Position int64  `json:"p"` // global position of its last event
	Count    int    `json:"n"` // how many events it appended
}

// dedupWindow keeps the most recent command records of one aggregate, up to
// max, oldest evicted first.
type dedupWindow struct {
	max  int
	ring []string // ids in arrival order, a ring of size max
	next int
	byID map[string]commandRecord
}

func newDedupWindow(max int) *dedupWindow {
	return &dedupWindow{max: max, byID: make(map[string]commandRecord)}
}

func (w *dedupWindow) get(id string) (commandRecord, bool) {
	r, ok := w.byID[id]
	return r, ok
}

func (w *dedupWindow) add(r commandRecord) {
	if _, ok := w.byID[r.ID]; ok {
		w.byID[r.ID] = r
		return
	}
	if len(w.ring) < w.max {
		w.ring = append(w.ring, r.ID)
	} else {
		delete(w.byID, w.ring[w.next])
		w.ring[w.next] = r.ID
		w.next = (w.next + 1) % w.max
	}
	w.byID[r.ID] = r
}

// records returns the records oldest first.
func (w *dedupWindow) records() []commandRecord {
	out := make([]commandRecord, 0, len(w.ring))
	for i := range w.ring {
		id := w.ring[(w.next+i)%len(w.ring)]
		out = append(out, w.byID[id])
	}
	return out
}

// observe records the command of a stored event, if it had an id. Events of
// one command are consecutive, so the record grows with each.
func (w *dedupWindow) observe(e persistence.RecordedEvent) {
	id := e.Metadata[persistence.MetadataCommandID]
	if id == "" {
		return
	}
	r, ok := w.byID[id]
	if ok && r.Version == e.Version-1 {
		r.Count++
	} else {
		r = commandRecord{ID: id, Count: 1}
	}
	r.Version, r.Position = e.Version, e.GlobalPosition
	w.add(r)
}

// snapshotEnvelope is what an aggregate snapshot stores: the encoded state
// and the dedup window, so that command ids survive a snapshot.
type snapshotEnvelope struct {
	Format   int             `json:"format"`
	State    []byte          `json:"state"`
	Commands []commandRecord `json:"commands,omitempty"`
}

const envelopeFormat = 1

func encodeEnvelope(state []byte, w *dedupWindow) ([]byte, error) {
	return json.Marshal(snapshotEnvelope{Format: envelopeFormat, State: state, Commands: w.records()})
}

func decodeEnvelope(data []byte) (snapshotEnvelope, error) {
	var env snapshotEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, err
	}
	if env.Format != envelopeFormat {
		return env, fmt.Errorf("snapshot envelope format %d, want %d", env.Format, envelopeFormat)
	}
	return env, nil
}

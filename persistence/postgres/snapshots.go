package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/composable-go/composable/persistence"
)

// snapshotRequest is one SaveSnapshot waiting for the snapshot writer.
type snapshotRequest struct {
	ctx  context.Context
	snap persistence.Snapshot
	done chan error // buffered: the writer never blocks on it
}

// Snapshot batches are bounded in count and in bytes.
const (
	maxSnapshotBatch      = 256
	maxSnapshotBatchBytes = 16 << 20
)

// writeSnapshots is the store's snapshot writer: like the append writer,
// it takes every queued snapshot and writes them in one transaction, one
// upsert for all. A snapshot per hundred events is otherwise a
// transaction per hundred events, which on a small machine costs the
// database as much CPU as a tenth of the appends.
func (s *Store) writeSnapshots() {
	defer close(s.snapshotsStopped)
	var carry *snapshotRequest
	for {
		first := carry
		carry = nil
		if first == nil {
			r, ok := <-s.snapshotRequests
			if !ok {
				return
			}
			first = r
		}
		batch, size := []*snapshotRequest{first}, len(first.snap.Data)
	collect:
		for len(batch) < maxSnapshotBatch {
			select {
			case r, ok := <-s.snapshotRequests:
				if !ok {
					break collect
				}
				if size+len(r.snap.Data) > maxSnapshotBatchBytes {
					carry = r
					break collect
				}
				batch, size = append(batch, r), size+len(r.snap.Data)
			default:
				break collect
			}
		}
		batch = liveSnapshots(batch)
		if len(batch) == 0 {
			continue
		}
		err := s.saveSnapshots(batch)
		if err != nil && len(batch) > 1 && !isConnectionError(err) && !errors.Is(err, context.DeadlineExceeded) {
			// A statement error may be one snapshot's fault: the others
			// should not pay for it. (A broken connection or a timeout is
			// nobody's: retrying each alone would only make Close wait.)
			for _, r := range liveSnapshots(batch) {
				r.done <- s.saveSnapshots([]*snapshotRequest{r})
			}
			continue
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// liveSnapshots answers the requests whose callers gave up, unwritten —
// a snapshot is only a cache — and returns the others.
func liveSnapshots(batch []*snapshotRequest) []*snapshotRequest {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	return live
}

// saveSnapshots upserts the latest of batch's snapshots of each stream in
// one round trip; an older version never replaces a newer one.
//
// A snapshot is a cache of what the events say, so its commit need not
// wait for the disk: a crash can lose the latest snapshots (replay then
// takes longer) but never an event, and no snapshot can outlive the events
// it covers, which committed durably before it was taken. Not waiting
// keeps snapshot writes from competing with appends for WAL flushes.
func (s *Store) saveSnapshots(batch []*snapshotRequest) error {
	latest := make(map[string]int, len(batch)) // stream → index in the columns
	var streams []string
	var versions []int64
	var schemaVersions []int32
	var data [][]byte
	for _, r := range batch {
		snap := r.snap
		if snap.Data == nil {
			snap.Data = []byte{}
		}
		if i, ok := latest[snap.StreamID]; ok {
			// One statement cannot upsert a row twice: keep the newer.
			if snap.Version >= versions[i] {
				versions[i], schemaVersions[i], data[i] = snap.Version, int32(snap.SchemaVersion), snap.Data
			}
			continue
		}
		latest[snap.StreamID] = len(streams)
		streams, versions = append(streams, snap.StreamID), append(versions, snap.Version)
		schemaVersions, data = append(schemaVersions, int32(snap.SchemaVersion)), append(data, snap.Data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.batchTimeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue("SET LOCAL synchronous_commit TO off")
	b.Queue(s.q.saveSnapshots, streams, versions, schemaVersions, data)
	b.Queue("COMMIT")
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		if len(batch) == 1 {
			return fmt.Errorf("postgres: save snapshot of %q: %w", batch[0].snap.StreamID, err)
		}
		return fmt.Errorf("postgres: save %d snapshots: %w", len(streams), err)
	}
	return nil
}

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/composable-go/composable/persistence"
)

// request is one Append waiting for the writer.
type request struct {
	ctx      context.Context
	stream   string
	expected persistence.ExpectedVersion
	events   []persistence.EventData
	metadata []string    // the events' metadata as JSON, "" for none; encoded by the caller
	done     chan result // buffered: the writer never blocks on it
}

type result struct {
	res persistence.AppendResult
	err error
}

// maxCachedStreams bounds the writer's cache of stream versions.
const maxCachedStreams = 1 << 16

// writer is the store's single ordered writer. It takes every queued append,
// commits as many as fit in one transaction (group commit), and answers each
// caller with its own outcome.
//
// Each transaction first takes a transaction-scoped advisory lock, reads the
// head of the feed, decides every request in order, and inserts the
// accepted ones at positions head+1, head+2, ... Because the lock is held
// until commit, transactions — from this process or any other Store on the
// same schema — assign positions and commit strictly one after another: a
// reader can never see position n+1 committed while n is not.
//
// To decide, the writer needs each stream's current version. It caches the
// versions it committed itself and reads the others, so a hot stream costs
// no lookup. A cached version can be stale only if another process appended
// to the stream; then the insert of the accepted request hits the unique
// (stream, version) key, nothing is written, and the batch is retried in
// careful mode, which reads every version and checks every event id. A
// refusal is never based on the cache: a batch that refuses a request reads
// the truth first.
type writer struct {
	store    *Store
	versions map[string]int64 // only the writer goroutine touches it
}

// errStale reports a unique violation in a fast-mode attempt: the cache was
// stale or an event id is already stored. Nothing was written.
var errStale = errors.New("postgres: stale writer cache")

func (w *writer) run() {
	defer close(w.store.stopped)
	for first := range w.store.requests {
		batch := []*request{first}
		n := len(first.events)
	collect:
		for n < w.store.cfg.maxBatchEvents {
			select {
			case r, ok := <-w.store.requests:
				if !ok {
					break collect
				}
				batch = append(batch, r)
				n += len(r.events)
			default:
				break collect
			}
		}
		w.commit(batch)
		runtime.Gosched() // let the callers just answered queue their next appends
	}
}

// decision is what the writer decided for one request inside a transaction.
type decision struct {
	r   *request
	res persistence.AppendResult
	err error // refused: nothing of this request is written
}

// commit writes one batch and answers its requests. An attempt that fails
// before COMMIT was sent wrote nothing, so it is retried: in careful mode
// after a unique violation, a few times on a broken connection, and finally
// request by request, so that a request that breaks the batch fails alone.
func (w *writer) commit(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- result{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	decisions, err := w.attempt(live, false)
	if errors.Is(err, errStale) {
		decisions, err = w.attempt(live, true)
	}
	for retries := 0; retryable(err) && isConnectionError(err) && retries < 3; retries++ {
		w.store.cfg.logger.Warn("postgres: append batch failed before commit; retrying", "requests", len(live), "error", err)
		decisions, err = w.attempt(live, true)
	}
	if retryable(err) && len(live) > 1 {
		decisions, err = w.oneByOne(live)
	}
	if err != nil {
		if errors.Is(err, ErrCommitUnknown) {
			for _, r := range live {
				delete(w.versions, r.stream)
			}
		}
		for _, r := range live {
			r.done <- result{err: err}
		}
		return
	}
	w.store.batches.Add(1)
	for _, d := range decisions {
		if d.err == nil {
			w.store.batchedEvents.Add(int64(len(d.r.events)))
		}
		d.r.done <- result{res: d.res, err: d.err}
	}
	w.store.signalAppended()
}

// retryable reports whether err left nothing written.
func retryable(err error) bool { return err != nil && !errors.Is(err, ErrCommitUnknown) }

// oneByOne commits each request in its own careful transaction.
func (w *writer) oneByOne(batch []*request) ([]decision, error) {
	out := make([]decision, 0, len(batch))
	for _, r := range batch {
		ds, err := w.attempt([]*request{r}, true)
		if err != nil {
			out = append(out, decision{r: r, err: fmt.Errorf("postgres: append to %q: %w", r.stream, err)})
			continue
		}
		out = append(out, ds...)
	}
	return out, nil
}

// state is what decisions rest on, read under the write lock.
type state struct {
	versions map[string]int64 // current version per stream of the batch
	verified map[string]bool  // versions read from the database, not the cache
	existing map[string]bool  // event ids of the batch already stored (careful mode)
	checked  bool             // existing is complete
}

// attempt runs one transaction for batch. In the common case — every stream
// of the batch is in the writer's cache — it takes one round trip: BEGIN,
// the write lock, the insert (which numbers the rows after the current head
// of the feed), the new head, NOTIFY and COMMIT, pipelined. Otherwise a first
// round trip begins, locks and reads what the decisions need. Round trips
// matter because every one on the writer's path delays all queued appends.
//
// attempt returns an error wrapping ErrCommitUnknown when the outcome of
// COMMIT is unknown, and any other error only when nothing was written. A
// connection left inside a transaction by an error is destroyed on release,
// which rolls the transaction back.
func (w *writer) attempt(batch []*request, careful bool) ([]decision, error) {
	s := w.store
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.batchTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()

	st := &state{versions: map[string]int64{}, verified: map[string]bool{}, existing: map[string]bool{}}
	var lookup []string
	for _, r := range batch {
		if _, seen := st.versions[r.stream]; seen || st.verified[r.stream] {
			continue
		}
		if v, ok := w.versions[r.stream]; ok && !careful {
			st.versions[r.stream] = v
			continue
		}
		st.verified[r.stream] = true
		lookup = append(lookup, r.stream)
	}
	began := false
	if len(lookup) > 0 || careful {
		if err := w.read(ctx, conn.Conn(), st, true, lookup, careful, batch); err != nil {
			return nil, err
		}
		began = true
	}
	decisions, rows := decide(batch, st)
	if refusesOnHearsay(decisions, st) {
		// Refusals must rest on the database and name duplicates first.
		var unverified []string
		for stream := range st.versions {
			if !st.verified[stream] {
				st.verified[stream] = true
				unverified = append(unverified, stream)
			}
		}
		if err := w.read(ctx, conn.Conn(), st, !began, unverified, true, batch); err != nil {
			return nil, err
		}
		began = true
		decisions, rows = decide(batch, st)
	}
	if rows.len() == 0 && !began {
		return decisions, nil
	}
	head, err := w.write(ctx, conn.Conn(), rows, !began)
	if err != nil {
		var pgErr *pgconn.PgError
		if !careful && errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return nil, fmt.Errorf("%w: %w", errStale, err)
		}
		return nil, err
	}
	// decide numbered the rows from 1; the insert put them after the old head.
	before := head - int64(rows.len())
	if len(w.versions) > maxCachedStreams {
		clear(w.versions)
	}
	for i := range decisions {
		if d := &decisions[i]; d.err == nil {
			d.res.Position += before
			w.versions[d.r.stream] = d.res.Version
		}
	}
	return decisions, nil
}

// write inserts the accepted rows, reads the new head of the feed, sends
// the NOTIFY hint and commits — in one round trip, which with begin also
// opens the transaction and takes the write lock (two round trips when a
// test hook runs before COMMIT). It returns the new head.
func (w *writer) write(ctx context.Context, conn *pgx.Conn, rows *rowSet, begin bool) (int64, error) {
	q := &w.store.q
	b := &pgx.Batch{}
	if begin {
		b.Queue("BEGIN")
		b.Queue(q.lock, lockKey("append", w.store.cfg.schema))
	}
	var head int64
	if rows.len() > 0 {
		b.Queue(q.insert, rows.streams, rows.versions, rows.ids, rows.types, rows.schemaVersions,
			rows.data, rows.offsets, rows.lengths, rows.metadata)
		b.Queue(q.head).QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
		if w.store.cfg.notify {
			b.Queue(q.notify, q.channel)
		}
	}
	if hook := w.store.beforeCommit; hook != nil {
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return 0, fmt.Errorf("insert: %w", err)
		}
		if err := hook(); err != nil {
			return 0, err
		}
		b = &pgx.Batch{}
	}
	b.Queue("COMMIT").Exec(func(pgconn.CommandTag) error { return nil })
	err := conn.SendBatch(ctx, b).Close()
	if err == nil {
		return head, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pgconn.SafeToRetry(err) {
		return 0, fmt.Errorf("insert or commit refused: %w", err) // not committed
	}
	if conn.PgConn().TxStatus() == 'I' && !conn.IsClosed() {
		return 0, fmt.Errorf("insert: %w", err)
	}
	return 0, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
}

// refusesOnHearsay reports whether a decision refuses a request on the
// strength of cached versions or without having checked for duplicates.
func refusesOnHearsay(decisions []decision, st *state) bool {
	for _, d := range decisions {
		if errors.Is(d.err, persistence.ErrConcurrency) && (!st.verified[d.r.stream] || !st.checked) {
			return true
		}
	}
	return false
}

// read fills st in one round trip: with lock, it first begins the
// transaction and takes the write lock; then the versions of streams, and, with
// checkIDs, which of the batch's event ids are stored.
func (w *writer) read(ctx context.Context, conn *pgx.Conn, st *state, lock bool, streams []string, checkIDs bool, batch []*request) error {
	q := &w.store.q
	b := &pgx.Batch{}
	if lock {
		b.Queue("BEGIN")
		b.Queue(q.lock, lockKey("append", w.store.cfg.schema))
	}
	if len(streams) > 0 {
		b.Queue(q.streamVersions, streams).Query(func(rows pgx.Rows) error {
			var id string
			var v int64
			_, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error {
				st.versions[id] = v
				return nil
			})
			return err
		})
		for _, id := range streams {
			if _, ok := st.versions[id]; !ok {
				st.versions[id] = 0
			}
		}
	}
	if checkIDs {
		var ids []string
		for _, r := range batch {
			for _, e := range r.events {
				ids = append(ids, e.ID)
			}
		}
		st.checked = true
		b.Queue(q.existingIDs, ids).Query(func(rows pgx.Rows) error {
			var id string
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				st.existing[id] = true
				return nil
			})
			return err
		})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("read write state: %w", err)
	}
	return nil
}

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
func decide(batch []*request, st *state) ([]decision, *rowSet) {
	n, size := 0, 0
	for _, r := range batch {
		n += len(r.events)
		for _, e := range r.events {
			size += len(e.Data)
		}
	}
	versions := maps.Clone(st.versions)
	existing := make(map[string]bool, len(st.existing)+n)
	maps.Copy(existing, st.existing)
	var pos int64 // rows are numbered from 1; attempt adds the feed's head
	rows := &rowSet{
		versions: make([]int64, 0, n), streams: make([]string, 0, n), ids: make([]string, 0, n),
		types: make([]string, 0, n), metadata: make([]string, 0, n), schemaVersions: make([]int32, 0, n),
		data: make([]byte, 0, size), offsets: make([]int32, 0, n), lengths: make([]int32, 0, n),
	}
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

func firstStored(events []persistence.EventData, existing map[string]bool) string {
	for _, e := range events {
		if existing[e.ID] {
			return e.ID
		}
	}
	return ""
}

// encodeMetadata returns the JSON text of each event's metadata, "" when
// it is empty (stored as NULL).
func encodeMetadata(events []persistence.EventData) []string {
	out := make([]string, len(events))
	for i, e := range events {
		if len(e.Metadata) == 0 {
			continue
		}
		b, err := json.Marshal(e.Metadata)
		if err != nil { // a map[string]string always marshals
			continue
		}
		out[i] = string(b)
	}
	return out
}

// isConnectionError reports whether err means the connection broke rather
// than a statement being wrong.
func isConnectionError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01: admin shutdown.
		return pgErr.Code[:2] == "08" || pgErr.Code == "57P01"
	}
	return !errors.Is(err, context.DeadlineExceeded)
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
)

// request is one Append waiting for the writer.
type request struct {
	ctx      context.Context
	stream   string
	expected persistence.ExpectedVersion
	events   []persistence.EventData
	metadata []string    // the events' metadata as JSON, "" for none; encoded by the caller
	done     chan result // buffered: the writer never blocks on it; nil when callback is set
	callback func(persistence.AppendResult, error)
	timers   []persistence.TimerChange // collapsed: one change per timer
	meta1    [1]string                 // metadata's storage for a single event
	answered bool                      // only the writer goroutine touches it
}

// newRequest returns the request to append events to stream, its
// metadata encoded.
func newRequest(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, cache *metadataCache) *request {
	r := &request{ctx: ctx, stream: stream, expected: expected, events: events}
	if len(events) == 1 {
		r.metadata = r.meta1[:]
	} else {
		r.metadata = make([]string, len(events))
	}
	encodeMetadata(r.metadata, events, cache)
	return r
}

// answer delivers the request's outcome, once: later calls do nothing (a
// request dropped as given up may be met again by a retry path).
func (r *request) answer(res result) {
	if r.answered {
		return
	}
	r.answered = true
	if r.callback != nil {
		r.callback(res.res, res.err)
		return
	}
	r.done <- res
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
	conn     *pgxpool.Conn    // held while appends keep coming; see acquire
	scratch  scratch          // decide's working memory
	st       state            // an attempt's working memory; see state

	// write's working memory and fixed parameters; see pipeline.go.
	enc                     []byte
	params                  [][]byte
	steps                   []step
	lockParam, channelParam []byte
	// The fence token of the attempt under way (WithFence).
	fencing  bool
	fenceID  string
	fenceGen int64
}

// errStale reports a unique violation in a fast-mode attempt: the cache was
// stale or an event id is already stored. Nothing was written.
var errStale = errors.New("postgres: stale writer cache")

func (w *writer) run() {
	defer close(w.store.stopped)
	defer w.releaseConn()
	var carry *request // the request that did not fit the previous batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case r, ok := <-w.store.requests:
				if !ok {
					return
				}
				first = r
			default:
				// Idle: give the connection back while waiting, so the
				// pool can check and recycle it.
				w.releaseConn()
				r, ok := <-w.store.requests
				if !ok {
					return
				}
				first = r
			}
		}
		batch := []*request{first}
		n, size := len(first.events), dataSize(first)
	collect:
		for {
			select {
			case r, ok := <-w.store.requests:
				if !ok {
					break collect
				}
				if n+len(r.events) > w.store.cfg.maxBatchEvents || size+dataSize(r) > maxBatchBytes {
					carry = r
					break collect
				}
				batch = append(batch, r)
				n, size = n+len(r.events), size+dataSize(r)
			default:
				break collect
			}
		}
		w.commit(batch)
		runtime.Gosched() // let the callers just answered queue their next appends
	}
}

// maxBatchBytes caps the event data of one transaction, well below
// PostgreSQL's 1 GB limit on one value; a single larger append still goes
// alone.
const maxBatchBytes = 64 << 20

func dataSize(r *request) int {
	n := 0
	for _, e := range r.events {
		n += len(e.Data)
	}
	return n
}

// decision is what the writer decided for one request inside a transaction.
type decision struct {
	r   *request
	res persistence.AppendResult
	err error // refused: nothing of this request is written
}

// commit writes one batch and answers each live request exactly once.
//
//   - A unique violation in fast mode (stale cache) is retried in careful
//     mode.
//   - A broken connection before COMMIT is retried, with back-off.
//   - An unknown COMMIT outcome is resolved: after the old transaction is
//     surely over, the writer looks for the batch's events and answers from
//     what it finds, retrying only what did not land.
//   - A statement error isolates the guilty request by committing the batch
//     request by request.
//
// Requests whose callers gave up are dropped before each attempt.
func (w *writer) commit(batch []*request) {
	live := w.alive(batch)
	if len(live) == 0 {
		return
	}
	decisions, err := w.attempt(live, false)
	if errors.Is(err, errStale) {
		decisions, err = w.attempt(live, true)
	}
	backoff := 50 * time.Millisecond
	for retries := 0; err != nil && retries < 3; retries++ {
		switch {
		case errors.Is(err, persistence.ErrFenced):
			retries = 3 // the member is out: no retry helps, and none may write
		case errors.Is(err, ErrCommitUnknown):
			decisions, err = w.resolve(live, decisions)
		case isConnectionError(err):
			w.store.cfg.logger.Warn("postgres: append batch failed before commit; retrying", "requests", len(live), "error", err)
			time.Sleep(backoff)
			backoff *= 2
			if live = w.alive(live); len(live) == 0 {
				return
			}
			decisions, err = w.attempt(live, true)
		default:
			retries = 3 // a statement error or a timeout: no retry helps
		}
	}
	if err != nil && !errors.Is(err, ErrCommitUnknown) && !errors.Is(err, context.DeadlineExceeded) && !isConnectionError(err) &&
		!errors.Is(err, persistence.ErrFenced) && len(live) > 1 {
		decisions, err = w.oneByOne(live)
	}
	if err != nil {
		if errors.Is(err, ErrCommitUnknown) {
			for _, r := range live {
				delete(w.versions, r.stream)
			}
		}
		for _, r := range live {
			r.answer(result{err: err})
		}
		return
	}
	wrote := false
	answered := make(map[*request]bool, len(decisions))
	for _, d := range decisions {
		if answered[d.r] {
			continue
		}
		answered[d.r] = true
		if d.err == nil {
			wrote = true
			w.store.batchedEvents.Add(int64(len(d.r.events)))
		}
		d.r.answer(result{res: d.res, err: d.err})
	}
	for _, r := range live { // a caller never waits forever, whatever happened above
		if !answered[r] {
			r.answer(result{err: errors.New("postgres: append not decided (a bug): retry with the same event ids")})
		}
	}
	if wrote {
		w.store.batches.Add(1)
		w.store.signalAppended()
	}
}

// alive answers the requests whose callers gave up and returns the others.
func (w *writer) alive(batch []*request) []*request {
	live := make([]*request, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.answer(result{err: err})
			continue
		}
		live = append(live, r)
	}
	return live
}

// oneByOne commits each live request in its own careful transaction.
func (w *writer) oneByOne(batch []*request) ([]decision, error) {
	out := make([]decision, 0, len(batch))
	for _, r := range w.alive(batch) {
		ds, err := w.attempt([]*request{r}, true)
		if errors.Is(err, ErrCommitUnknown) {
			ds, err = w.resolve([]*request{r}, ds)
		}
		if err != nil {
			out = append(out, decision{r: r, err: fmt.Errorf("postgres: append to %q: %w", r.stream, err)})
			continue
		}
		out = append(out, ds...)
	}
	return out, nil
}

// resolve settles a batch whose COMMIT outcome is unknown. Taking the write
// lock in a new session waits until the old transaction is over —
// committed or rolled back — so the accepted requests' last event ids then
// tell which it was. Requests that landed are answered from the stored
// rows; the others are attempted again.
func (w *writer) resolve(batch []*request, decided []decision) ([]decision, error) {
	s := w.store
	ids := make([]string, 0, len(decided))
	for _, d := range decided {
		if d.err == nil {
			ids = append(ids, d.r.events[len(d.r.events)-1].ID)
		}
	}
	if len(ids) == 0 { // nothing was to be written: the refusals stand
		return decided, nil
	}
	found := map[string]persistence.AppendResult{}
	backoff := 50 * time.Millisecond
	var err error
	for try := range 4 {
		if try > 0 {
			time.Sleep(backoff)
			backoff *= 2
		}
		if err = w.lookup(ids, found); err == nil {
			break
		}
	}
	if err != nil {
		return decided, fmt.Errorf("%w: still unresolved: %w", ErrCommitUnknown, err)
	}
	if len(found) == 0 {
		// Nothing landed: the transaction rolled back. Try again.
		w.store.cfg.logger.Warn("postgres: append batch did not commit; retrying", "requests", len(batch))
		// If this outcome is unknown too, the decisions go back with it
		// for the next resolve to look up.
		return w.attempt(w.alive(batch), true)
	}
	// The transaction committed: every decision stands.
	out := make([]decision, 0, len(decided))
	for _, d := range decided {
		if d.err == nil {
			res, ok := found[d.r.events[len(d.r.events)-1].ID]
			if !ok {
				return decided, fmt.Errorf("%w: batch half found after commit", ErrCommitUnknown)
			}
			d.res = res
			w.versions[d.r.stream] = res.Version
		}
		out = append(out, d)
	}
	s.cfg.logger.Info("postgres: append batch committed despite a broken connection", "requests", len(out))
	return out, nil
}

// lookup finds the version and position of the given event ids, under the
// write lock.
func (w *writer) lookup(ids []string, found map[string]persistence.AppendResult) error {
	s := w.store
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.batchTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	queueBegin(b, s)
	b.Queue(s.q.locate, ids).Query(func(rows pgx.Rows) error {
		var id string
		var r persistence.AppendResult
		_, err := pgx.ForEachRow(rows, []any{&id, &r.Version, &r.Position}, func() error {
			found[id] = r
			return nil
		})
		return err
	})
	b.Queue("COMMIT")
	return conn.SendBatch(ctx, b).Close()
}

// queueBegin opens an append transaction: READ COMMITTED whatever the
// database's default (later statements must see what committed while this
// one waited for the lock), durable commits whatever the role's setting,
// and the write lock.
func queueBegin(b *pgx.Batch, s *Store) {
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue("SET LOCAL synchronous_commit TO on")
	b.Queue(idleTimeoutSQL(s.cfg.batchTimeout))
	b.Queue(s.q.lock, lockKey("append", s.cfg.schema))
}

// idleTimeoutSQL bounds how long the server keeps a writer's transaction —
// and the write lock — open while the writer sends nothing: a writer cut
// off between two round trips would otherwise hold every other process's
// appends until the server noticed the dead connection.
func idleTimeoutSQL(batchTimeout time.Duration) string {
	return fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout TO %d", idleTimeoutMillis(batchTimeout))
}

func idleTimeoutMillis(batchTimeout time.Duration) int64 {
	return max(batchTimeout.Milliseconds(), 1000)
}

// isConnectionError reports whether err means the connection broke rather
// than a statement being wrong.
func isConnectionError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01: admin shutdown; and any
		// FATAL or PANIC, after which the session is gone (a crash
		// shutdown may come after COMMIT reached the disk).
		return pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
	}
	return !errors.Is(err, context.DeadlineExceeded)
}

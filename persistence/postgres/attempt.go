package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
)

// state is what decisions rest on, read under the write lock.
type state struct {
	versions map[string]int64 // current version per stream of the batch
	verified map[string]bool  // versions read from the database, not the cache
	existing map[string]bool  // event ids of the batch already stored (careful mode)
	checked  bool             // existing is complete
}

// state returns the writer's state for a new attempt, its maps reused
// from the last one.
func (w *writer) state() *state {
	st := &w.st
	if st.versions == nil || len(st.versions) > maxKept/64 {
		*st = state{versions: map[string]int64{}, verified: map[string]bool{}, existing: map[string]bool{}}
	}
	clear(st.versions)
	clear(st.verified)
	clear(st.existing)
	st.checked = false
	return st
}

// attempt runs one transaction for batch. In the common case — every stream
// of the batch is in the writer's cache — it takes one round trip: BEGIN,
// the write lock, the insert (which numbers the rows after the current head
// of the feed), the new head and COMMIT, pipelined, then NOTIFY on its own.
// Otherwise a first round trip begins, locks and reads what the decisions
// need. Round trips matter because every one on the writer's path delays
// all queued appends.
//
// attempt returns an error wrapping ErrCommitUnknown, with the decisions it
// tried to commit, when the outcome of COMMIT is unknown, and any other
// error only when nothing was written. A connection left inside a
// transaction by an error is given back to the pool, which destroys it and
// so rolls the transaction back.
func (w *writer) attempt(batch []*request, careful bool) ([]decision, error) {
	s := w.store
	s.attempts.Add(1)
	id, gen, err := s.fenceToken()
	if err != nil {
		return nil, err // the member is out: nothing may be written
	}
	w.fencing, w.fenceID, w.fenceGen = s.cfg.fence != nil, id, gen
	decisions, err := w.attemptFenced(batch, careful)
	return decisions, fenced(err)
}

// attemptFenced is attempt once the fence token is known.
func (w *writer) attemptFenced(batch []*request, careful bool) ([]decision, error) {
	s := w.store
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.batchTimeout)
	defer cancel()
	conn, err := w.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	defer w.settle()
	// Prepared before any transaction begins: on a new connection this
	// takes round trips, which must not happen under the write lock.
	stmts, err := w.statements(ctx, conn.Conn())
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}

	st := w.state()
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
	decisions, rows := decide(batch, st, &w.scratch)
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
		decisions, rows = decide(batch, st, &w.scratch)
	}
	if rows.len() == 0 && !began {
		return decisions, nil
	}
	head, err := w.write(ctx, conn.Conn(), stmts, rows, timerChanges(decisions), !began)
	if errors.Is(err, ErrCommitUnknown) {
		return decisions, err
	}
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
	for stream := range st.verified { // refused streams' versions are news too
		w.versions[stream] = st.versions[stream]
	}
	for i := range decisions {
		if d := &decisions[i]; d.err == nil {
			d.res.Position += before
			w.versions[d.r.stream] = d.res.Version
		}
	}
	return decisions, nil
}

// acquire returns the writer's connection, taking one from the pool if it
// holds none. Holding it from batch to batch spares each transaction a
// trip through the pool, where snapshot writes and readers compete.
func (w *writer) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if w.conn == nil {
		c, err := w.store.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		w.conn = c
	}
	return w.conn, nil
}

// settle keeps the connection for the next batch if it is idle outside a
// transaction and the pool has others to give, and otherwise gives it back
// to the pool, which destroys a connection that is broken or still inside a
// transaction (rolling that back). A small pool under steady appends thus
// still serves readers between batches.
func (w *writer) settle() {
	if w.conn == nil {
		return
	}
	if pc := w.conn.Conn().PgConn(); pc.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		w.releaseConn()
		return
	}
	if st := w.store.pool.Stat(); st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
		w.releaseConn()
	}
}

// releaseConn gives the held connection back to the pool.
func (w *writer) releaseConn() {
	if w.conn != nil {
		w.conn.Release()
		w.conn = nil
	}
}

// write inserts the accepted rows, reads the new head of the feed and
// commits, in one round trip which with begin also opens the transaction;
// the NOTIFY hint follows COMMIT in the same round trip, in its own
// transaction, so that it never holds up or fails an append. (A test hook
// that runs before COMMIT costs a second round trip.) It returns the new
// head.
//
// Whether COMMIT happened is read from COMMIT's own completion, not from
// the batch's error: an error after it (the NOTIFY, a broken connection)
// does not undo it. No completion and no server error means the outcome is
// unknown.
func (w *writer) write(ctx context.Context, conn *pgx.Conn, st *txStatements, rows *rowSet, timers []persistence.TimerChange, begin bool) (int64, error) {
	steps := w.steps[:0]
	if begin {
		steps = append(steps, step{sd: st.begin}, step{sd: st.setLocal}, step{sd: st.idleTimeout}, step{sd: st.lock, params: [][]byte{w.lockParam}})
	}
	var head int64
	if rows.len() > 0 {
		steps = append(steps, step{sd: st.insert, params: w.encodeRows(rows)},
			step{sd: st.head, resultBinary: true, onResult: func(r *pgconn.Result) {
				if len(r.Rows) == 1 && len(r.Rows[0]) == 1 && len(r.Rows[0][0]) == 8 {
					head = int64(binary.BigEndian.Uint64(r.Rows[0][0]))
				}
			}})
	}
	if len(timers) > 0 {
		// Planned for the table as it is now: a plan cached while the
		// table was small scans all of it once it has grown, until an
		// ANALYZE invalidates the plan.
		steps = append(steps, step{sd: st.customPlans}, step{sd: st.timers, params: encodeTimers(timers)})
	}
	if hook := w.store.beforeCommit; hook != nil {
		if err := roundTrip(ctx, conn, steps); err != nil {
			return 0, fmt.Errorf("insert: %w", err)
		}
		if err := hook(); err != nil {
			return 0, err
		}
		steps = steps[:0]
	}
	if w.fencing {
		// Last before COMMIT, in the same round trip: the member's row is
		// checked on the server's clock as late as it can be.
		steps = append(steps, step{sd: st.fence, params: [][]byte{[]byte(w.fenceID), binary.BigEndian.AppendUint64(nil, uint64(w.fenceGen))}})
	}
	committed := false
	steps = append(steps, step{sd: st.commit, onResult: func(r *pgconn.Result) {
		committed = r.CommandTag.String() == "COMMIT" // an aborted transaction answers ROLLBACK
	}})
	if rows.len() > 0 && w.store.cfg.notify {
		steps = append(steps, step{sd: st.notify, params: [][]byte{w.channelParam}})
	}
	err := roundTrip(ctx, conn, steps)
	clear(steps) // drop the closures and parameters
	w.steps = steps[:0]
	clear(w.params) // they point into the encoding buffer, which may be too big to keep
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "26000" {
		// A prepared statement is gone (DISCARD ALL, a pooler): pgx's map
		// of them is stale. Closing the connection makes the pool replace
		// it; this batch is refused, nothing having run.
		_ = conn.Close(ctx)
	}
	switch {
	case committed && (head > 0 || rows.len() == 0):
		return head, nil
	case committed:
		return 0, fmt.Errorf("%w: committed, but the new head was not read: %w", ErrCommitUnknown, errors.Join(err, errNoHead))
	case err == nil:
		return 0, errors.New("postgres: COMMIT did not complete")
	}
	if pgconn.SafeToRetry(err) || (errors.As(err, &pgErr) && !isConnectionError(pgErr)) {
		return 0, fmt.Errorf("insert or commit refused: %w", err) // not committed
	}
	return 0, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
}

// timerChanges returns the timer changes of the accepted requests, in
// batch order, collapsed to one per timer: the net effect of applying them
// one request after another.
func timerChanges(decisions []decision) []persistence.TimerChange {
	var changes []persistence.TimerChange
	for _, d := range decisions {
		if d.err == nil {
			changes = append(changes, d.r.timers...)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return persistence.CollapseTimers(changes)
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
// transaction and takes the write lock; then it reads the versions of
// streams, and, with checkIDs, which of the batch's event ids are stored.
func (w *writer) read(ctx context.Context, conn *pgx.Conn, st *state, lock bool, streams []string, checkIDs bool, batch []*request) error {
	q := &w.store.q
	b := &pgx.Batch{}
	if lock {
		queueBegin(b, w.store)
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

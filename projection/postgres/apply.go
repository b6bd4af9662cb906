package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

// Tx is the transaction a projection's Setup and Handle write through. Its
// search_path is the model's schema, so SQL names tables bare.
//
// Exec, Query and QueryRow run at once. Queue defers a write to the end of
// the batch, where every queued write goes to the server in one round trip
// with the checkpoint: the fast path for handlers that only write (a pure
// mapping from event to upserts). Queued writes run in order, before any
// later Exec, Query or QueryRow, so a handler that mixes them still sees
// its own writes.
type Tx struct {
	tx     pgx.Tx
	schema string
	batch  *pgx.Batch
	owners []int // the event index that queued each statement
	index  int   // the event being handled; -1 during Setup
}

// Queue defers a write (see [Tx]).
func (t *Tx) Queue(sql string, args ...any) {
	t.batch.Queue(sql, args...)
	t.owners = append(t.owners, t.index)
}

// Exec runs a statement now, after the queued ones.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.tx.Exec(ctx, sql, args...)
}

// Query runs a query now, after the queued statements. Close the rows
// before the next statement.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Query(ctx, sql, args...)
}

// QueryRow runs a query for one row now, after the queued statements.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

// Schema returns the schema of the generation being written.
func (t *Tx) Schema() string { return t.schema }

// flush sends the queued statements; an error names the event that queued
// the failing one.
func (t *Tx) flush(ctx context.Context) error {
	return t.send(ctx, nil)
}

// send sends the queued statements followed by tail (not owned by any
// event), in one round trip.
func (t *Tx) send(ctx context.Context, tail *pgx.Batch) error {
	n := t.batch.Len()
	if tail != nil {
		for _, q := range tail.QueuedQueries {
			t.batch.Queue(q.SQL, q.Arguments...)
		}
	}
	if t.batch.Len() == 0 {
		return nil
	}
	batch, owners := t.batch, t.owners
	t.batch, t.owners = &pgx.Batch{}, nil
	results := t.tx.SendBatch(ctx, batch)
	for i := range batch.Len() {
		if _, err := results.Exec(); err != nil {
			_ = results.Close()
			if i < n {
				return &queuedError{index: owners[i], err: err}
			}
			return err
		}
	}
	return results.Close()
}

// queuedError is a queued statement's failure, with the event that queued
// it.
type queuedError struct {
	index int
	err   error
}

func (e *queuedError) Error() string { return e.err.Error() }
func (e *queuedError) Unwrap() error { return e.err }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Apply implements [projection.Store].
func (s *Store) Apply(ctx context.Context, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := projection.ValidateBatch(events); err != nil {
		return err
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("projection/postgres: apply to %s: %w", p.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	err = s.apply(ctx, tx, p, events)
	if err == nil {
		err = tx.Commit(ctx)
	}
	var ae *projection.ApplyError
	if err != nil && !errors.As(err, &ae) {
		return fmt.Errorf("projection/postgres: apply to %s: %w", p.Name, err)
	}
	return err
}

// apply runs the batch inside tx, up to (not including) COMMIT.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	pos, ready, err := s.lock(ctx, tx, p.Name)
	if err != nil {
		return err
	}
	t, err := s.begin(ctx, tx, p, ready)
	if err != nil {
		return err
	}
	last := pos
	for i, e := range events {
		if e.GlobalPosition <= pos {
			continue
		}
		t.index = i
		if err := p.Handle(ctx, t, e); err != nil {
			return handlerError(t, events, i, err)
		}
		last = e.GlobalPosition
	}
	tail := &pgx.Batch{}
	tail.Queue(s.q.markReady, p.Name, last)
	if err := t.send(ctx, tail); err != nil {
		return handlerError(t, events, -1, err)
	}
	return nil
}

// begin sets tx up for p's handlers: search_path, and, in a generation not
// ready yet, a fresh schema and Setup. The caller holds the checkpoint
// row's lock if !ready.
func (s *Store) begin(ctx context.Context, tx pgx.Tx, p projection.Projection[*Tx], ready bool) (*Tx, error) {
	schema := s.quoted(p.Name)
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+schema); err != nil {
		return nil, err
	}
	t := &Tx{tx: tx, schema: s.Schema(p.Name), batch: &pgx.Batch{}, index: -1}
	if ready {
		return t, nil
	}
	// A new generation: a fresh schema (dropping what a failed attempt may
	// have left), then Setup, all in this transaction.
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema); err != nil {
		return nil, err
	}
	if p.Setup != nil {
		if err := p.Setup(ctx, t); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		if err := t.flush(ctx); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	return t, nil
}

// ApplyEvent implements [projection.StreamApplier]. Events of different
// streams apply concurrently: a transaction locks the stream's version row
// only — and the checkpoint row, once, to set up a new generation.
func (s *Store) ApplyEvent(ctx context.Context, p projection.Projection[*Tx], e persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("projection/postgres: apply to %s: %w", p.Name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	err = s.applyEvent(ctx, tx, p, e)
	if errors.Is(err, errDuplicate) {
		return nil
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	var ae *projection.ApplyError
	var gap *projection.GapError
	if err != nil && !errors.As(err, &ae) && !errors.As(err, &gap) {
		return fmt.Errorf("projection/postgres: apply to %s: %w", p.Name, err)
	}
	return err
}

// errDuplicate ends the transaction of an event already applied.
var errDuplicate = errors.New("duplicate")

func (s *Store) applyEvent(ctx context.Context, tx pgx.Tx, p projection.Projection[*Tx], e persistence.RecordedEvent) error {
	var ready bool
	if err := tx.QueryRow(ctx, s.q.ready, p.Name).Scan(&ready); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if !ready {
		var err error
		if _, ready, err = s.lock(ctx, tx, p.Name); err != nil {
			return err
		}
	}
	if err := s.claimVersion(ctx, tx, p.Name, e); err != nil {
		return err
	}
	t, err := s.begin(ctx, tx, p, ready)
	if err != nil {
		return err
	}
	events := []persistence.RecordedEvent{e}
	t.index = 0
	if err := p.Handle(ctx, t, e); err != nil {
		return handlerError(t, events, 0, err)
	}
	tail := &pgx.Batch{}
	if !ready {
		tail.Queue(s.q.markReady, p.Name, 0)
	}
	if err := t.send(ctx, tail); err != nil {
		return handlerError(t, events, -1, err)
	}
	return nil
}

// claimVersion records e.Version as its stream's last applied, if it is
// the next one. A concurrent delivery of the same stream waits on the
// row's lock, then finds the version taken.
func (s *Store) claimVersion(ctx context.Context, tx pgx.Tx, name string, e persistence.RecordedEvent) error {
	var applied int64
	err := tx.QueryRow(ctx, s.q.lockVersion, name, e.StreamID).Scan(&applied)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	switch {
	case e.Version <= applied:
		return errDuplicate
	case e.Version > applied+1:
		return &projection.GapError{Name: name, Stream: e.StreamID, Applied: applied, Version: e.Version}
	case applied == 0:
		// No row to lock yet: two first deliveries meet at the insert.
		tag, err := tx.Exec(ctx, s.q.insertVersion, name, e.StreamID, e.Version)
		if err == nil && tag.RowsAffected() == 0 {
			return errDuplicate
		}
		return err
	}
	_, err = tx.Exec(ctx, s.q.updateVersion, name, e.StreamID, e.Version)
	return err
}

// SkipEvent implements [projection.StreamApplier].
func (s *Store) SkipEvent(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	md, err := metadataJSON(e.Metadata)
	if err != nil {
		return err
	}
	data := e.Data
	if data == nil {
		data = []byte{}
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.claimVersion(ctx, tx, name, e); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.insertDeadLetter, name, e.GlobalPosition, e.ID, e.StreamID, e.Version, e.Type, e.SchemaVersion,
			data, md, e.RecordedAt, cause.Error())
		return err
	})
	var gap *projection.GapError
	switch {
	case err == nil, errors.Is(err, errDuplicate):
		return nil
	case errors.As(err, &gap):
		return err
	}
	return fmt.Errorf("projection/postgres: dead letter of %s at %s@%d: %w", name, e.StreamID, e.Version, err)
}

// StreamVersion implements [projection.StreamApplier].
func (s *Store) StreamVersion(ctx context.Context, name, stream string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, s.q.streamVersion, name, stream).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projection/postgres: version of %s in %s: %w", stream, name, err)
	}
	return v, nil
}

// handlerError tells the handler's failures — its own errors, statements
// the database refused as invalid — from the database being unavailable,
// which is not the event's fault and must never dead-letter it. at is the
// event being handled, -1 when the batch is being sent.
func handlerError(t *Tx, events []persistence.RecordedEvent, at int, err error) error {
	var qe *queuedError
	if errors.As(err, &qe) && qe.index >= 0 {
		at = qe.index
	}
	if at < 0 || unavailable(t, err) {
		return err
	}
	return &projection.ApplyError{Index: at, Event: events[at], Err: err}
}

// unavailable reports failures of the connection or the server rather than
// of the statement.
func unavailable(t *Tx, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || t.tx.Conn().IsClosed() {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources
			"57", // operator intervention: shutdown, cancelled statement
			"58", // system error
			"XX": // internal error
			return true
		}
		// lock_not_available (a lock timeout), object_in_use: contention,
		// not the statement's fault.
		return pgErr.Code == "55P03" || pgErr.Code == "55006"
	}
	var netErr net.Error
	return errors.As(err, &netErr) || pgconn.SafeToRetry(err)
}

// metadataJSON encodes event metadata for a jsonb column (nil for none).
func metadataJSON(md map[string]string) ([]byte, error) {
	if len(md) == 0 {
		return nil, nil
	}
	return json.Marshal(md)
}

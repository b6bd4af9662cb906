// Package postgres keeps projections' read models in PostgreSQL, each
// batch's writes and the projection's checkpoint in one transaction: a crash
// at any point leaves either the whole batch applied with its checkpoint or
// none of it, and a replayed batch is skipped by position, so every event
// takes effect exactly once.
//
// Each projection's read model lives in its own schema, named after the
// store's schema and the projection ("projections_order_history" for the
// projection order_history in the default schema "projections"); handlers
// and Setup run with search_path set to it, so their SQL uses bare table
// names. A rebuild builds the next generation in a schema of its own and
// switches over by renaming schemas in one transaction, so queries — which
// name the model's schema, see [Store.Schema] and [Store.Table] — never see
// a half-built model.
//
// The store's pool may point at a database other than the event store's:
// the read side can live apart. The runner's lease can come from either.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/internal/pgmigrate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = pgmigrate.Set{Files: migrationFiles, Dir: "migrations", Table: "projection_migrations"}

var (
	_ projection.Store[*Tx] = (*Store)(nil)
	_ projection.Rebuilder  = (*Store)(nil)

	_ projection.StreamApplier[*Tx] = (*Store)(nil)
)

// maxSchema bounds the store's schema name so that every model schema
// (schema + "_" + a 30-character name + "__rebuild") fits PostgreSQL's 63
// bytes.
const maxSchema = 63 - 1 - 30 - len("__rebuild")

// Store keeps read models and their checkpoints. It is safe for concurrent
// use.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	q      queries
}

// Option configures a Store.
type Option func(*Store)

// WithSchema sets the schema of the store's own tables (checkpoints, dead
// letters, rebuilds), and the prefix of the models' schemas. Default
// "projections"; at most 23 bytes.
func WithSchema(name string) Option { return func(s *Store) { s.schema = name } }

// New returns a store on pool, creating its tables if need be.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	s := &Store{pool: pool, schema: "projections"}
	for _, o := range opts {
		o(s)
	}
	if s.schema == "" || len(s.schema) > maxSchema {
		return nil, fmt.Errorf("%w: schema %q: 1 to %d bytes", projection.ErrInvalid, s.schema, maxSchema)
	}
	if err := migrations.Apply(ctx, pool, s.schema); err != nil {
		return nil, fmt.Errorf("projection/postgres: migrate schema %s: %w", s.schema, err)
	}
	s.q = newQueries(s.schema)
	return s, nil
}

// Schema returns the schema holding the current model of the projection
// name, for queries: SELECT ... FROM <schema>.<table>.
func (s *Store) Schema(name string) string { return s.schema + "_" + name }

// Table returns the quoted, qualified name of a table of the projection
// name's current model.
func (s *Store) Table(name, table string) string {
	return pgx.Identifier{s.Schema(name), table}.Sanitize()
}

// Checkpoint implements [projection.Store].
func (s *Store) Checkpoint(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := s.pool.QueryRow(ctx, s.q.checkpoint, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projection/postgres: checkpoint of %s: %w", name, err)
	}
	return pos, nil
}

// DeadLetter implements [projection.Store].
func (s *Store) DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		pos, _, err := s.lock(ctx, tx, name)
		if err != nil || e.GlobalPosition <= pos {
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
		b := &pgx.Batch{}
		b.Queue(s.q.insertDeadLetter, name, e.GlobalPosition, e.ID, e.StreamID, e.Version, e.Type, e.SchemaVersion,
			data, md, e.RecordedAt, cause.Error())
		b.Queue(s.q.saveCheckpoint, name, e.GlobalPosition)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("projection/postgres: dead letter of %s at %d: %w", name, e.GlobalPosition, err)
	}
	return nil
}

// DeadLetters implements [projection.Store].
func (s *Store) DeadLetters(ctx context.Context, name string) ([]projection.DeadLetter, error) {
	rows, err := s.pool.Query(ctx, s.q.deadLetters, name)
	if err != nil {
		return nil, fmt.Errorf("projection/postgres: dead letters of %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (projection.DeadLetter, error) {
		var d projection.DeadLetter
		var md map[string]string
		err := row.Scan(&d.Event.GlobalPosition, &d.Event.ID, &d.Event.StreamID, &d.Event.Version, &d.Event.Type,
			&d.Event.SchemaVersion, &d.Event.Data, &md, &d.Event.RecordedAt, &d.Error, &d.At)
		d.Event.Metadata = md
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("projection/postgres: dead letters of %s: %w", name, err)
	}
	return out, nil
}

// Drop deletes the projection name: its models (a generation being built
// included), checkpoints and dead letters. A runner started afterwards
// builds it afresh.
func (s *Store) Drop(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	building := projection.RebuildName(name)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("DROP SCHEMA IF EXISTS " + s.quoted(name) + " CASCADE")
		b.Queue("DROP SCHEMA IF EXISTS " + s.quoted(building) + " CASCADE")
		b.Queue(s.q.deleteCheckpoints, []string{name, building})
		b.Queue(s.q.deleteDeadLetters, []string{name, building})
		b.Queue(s.q.deleteVersions, []string{name, building})
		b.Queue(s.q.deleteRebuild, name)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("projection/postgres: drop %s: %w", name, err)
	}
	return nil
}

// lock returns the checkpoint row of name — created if missing — locked
// for the rest of tx, so that two runners (say, during a lease hand-over)
// never interleave batches.
func (s *Store) lock(ctx context.Context, tx pgx.Tx, name string) (pos int64, ready bool, err error) {
	b := &pgx.Batch{}
	b.Queue(s.q.ensureCheckpoint, name)
	b.Queue(s.q.lockCheckpoint, name).QueryRow(func(row pgx.Row) error { return row.Scan(&pos, &ready) })
	err = tx.SendBatch(ctx, b).Close()
	return pos, ready, err
}

// quoted returns the quoted schema of a generation.
func (s *Store) quoted(name string) string { return pgx.Identifier{s.Schema(name)}.Sanitize() }

func checkName(name string) error {
	if projection.ValidStoreName(name) {
		return nil
	}
	return fmt.Errorf("%w: projection name %q", projection.ErrInvalid, name)
}

// queries holds the SQL texts, built once with the schema quoted in.
type queries struct {
	checkpoint, ensureCheckpoint, lockCheckpoint, saveCheckpoint, markReady  string
	deleteCheckpoints, copyCheckpoint, ready                                 string
	lockVersion, insertVersion, updateVersion, streamVersion, deleteVersions string
	insertDeadLetter, deadLetters, deleteDeadLetters, moveDeadLetters        string
	rebuilding, lockRebuild, insertRebuild, deleteRebuild                    string
}

func newQueries(schema string) queries {
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	checkpoints, dead, rebuilds, versions := table("checkpoints"), table("dead_letters"), table("rebuilds"), table("stream_versions")
	return queries{
		checkpoint:        "SELECT position FROM " + checkpoints + " WHERE name = $1",
		ready:             "SELECT ready FROM " + checkpoints + " WHERE name = $1",
		lockVersion:       "SELECT version FROM " + versions + " WHERE name = $1 AND stream = $2 FOR UPDATE",
		insertVersion:     "INSERT INTO " + versions + " (name, stream, version) VALUES ($1, $2, $3) ON CONFLICT (name, stream) DO NOTHING",
		updateVersion:     "UPDATE " + versions + " SET version = $3 WHERE name = $1 AND stream = $2",
		streamVersion:     "SELECT version FROM " + versions + " WHERE name = $1 AND stream = $2",
		deleteVersions:    "DELETE FROM " + versions + " WHERE name = ANY($1)",
		ensureCheckpoint:  "INSERT INTO " + checkpoints + " (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
		lockCheckpoint:    "SELECT position, ready FROM " + checkpoints + " WHERE name = $1 FOR UPDATE",
		saveCheckpoint:    "UPDATE " + checkpoints + " SET position = $2, updated_at = now() WHERE name = $1 AND position < $2",
		markReady:         "UPDATE " + checkpoints + " SET position = greatest(position, $2), ready = true, updated_at = now() WHERE name = $1",
		deleteCheckpoints: "DELETE FROM " + checkpoints + " WHERE name = ANY($1)",
		copyCheckpoint: "INSERT INTO " + checkpoints + " (name, position, ready) SELECT $1, position, ready FROM " + checkpoints + " WHERE name = $2 " +
			"ON CONFLICT (name) DO UPDATE SET position = excluded.position, ready = excluded.ready, updated_at = now()",
		insertDeadLetter: "INSERT INTO " + dead + " (name, position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at, error) " +
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (name, position) DO NOTHING",
		deadLetters: "SELECT position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at, error, dead_at FROM " +
			dead + " WHERE name = $1 ORDER BY position",
		deleteDeadLetters: "DELETE FROM " + dead + " WHERE name = ANY($1)",
		moveDeadLetters:   "UPDATE " + dead + " SET name = $1 WHERE name = $2",
		rebuilding:        "SELECT building FROM " + rebuilds + " WHERE name = $1",
		lockRebuild:       "SELECT building FROM " + rebuilds + " WHERE name = $1 FOR UPDATE",
		insertRebuild:     "INSERT INTO " + rebuilds + " (name, building) VALUES ($1, $2)",
		deleteRebuild:     "DELETE FROM " + rebuilds + " WHERE name = $1",
	}
}

// View runs fn in a read-only transaction on one snapshot of the current
// model of name, with search_path set to the model's schema, and tells it
// the checkpoint that snapshot reflects: every event up to it is in what
// fn reads, none after it. Caches use it to know how fresh a read is.
func (s *Store) View(ctx context.Context, name string, fn func(ctx context.Context, tx pgx.Tx, checkpoint int64) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+s.quoted(name)); err != nil {
			return err
		}
		var pos int64
		if err := tx.QueryRow(ctx, s.q.checkpoint, name).Scan(&pos); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return fn(ctx, tx, pos)
	})
}

// Pool returns the store's pool, for queries of the read models.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

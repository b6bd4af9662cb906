// Package postgres makes bus consumers exactly-once in effect when their
// effects live in PostgreSQL: a [Deduplicator] runs the handler in a
// transaction that also records the event as processed, so a redelivered
// event — at-least-once delivery makes them normal — changes nothing.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/bus"
)

// TxHandler handles a delivery inside the deduplicating transaction. Its
// writes through tx commit together with the record of the event; if it
// returns an error, neither does.
type TxHandler func(ctx context.Context, tx pgx.Tx, d bus.Delivery) error

// Key chooses what identifies a delivery for deduplication.
type Key func(d bus.Delivery) string

// ByEventID deduplicates by event id (the default).
func ByEventID(d bus.Delivery) string { return d.Event.ID }

// ByStreamVersion deduplicates by stream and version, for events whose ids
// may differ between copies.
func ByStreamVersion(d bus.Delivery) string {
	return fmt.Sprintf("%s@%d", d.Event.StreamID, d.Event.Version)
}

// Deduplicator records processed events per consumer in a table of its
// own. It is safe for concurrent use.
type Deduplicator struct {
	pool     *pgxpool.Pool
	consumer string
	key      Key
	insert   string
}

// ErrInvalidConfig is matched by errors for a bad schema or consumer name.
var ErrInvalidConfig = errors.New("bus/postgres: invalid config")

// NewDeduplicator creates, if missing, the processed_events table in
// schema and returns a deduplicator for the named consumer (usually the
// consumer group). key defaults to [ByEventID].
func NewDeduplicator(ctx context.Context, pool *pgxpool.Pool, schema, consumer string, key Key) (*Deduplicator, error) {
	if schema == "" || len(schema) > 63 || consumer == "" {
		return nil, fmt.Errorf("%w: schema %q, consumer %q", ErrInvalidConfig, schema, consumer)
	}
	if key == nil {
		key = ByEventID
	}
	table := pgx.Identifier{schema, "processed_events"}.Sanitize()
	// Concurrent CREATE ... IF NOT EXISTS can still collide: serialise.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ddlLock(schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+` (
			consumer     text        NOT NULL,
			key          text        NOT NULL,
			processed_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (consumer, key))`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus/postgres: create processed_events: %w", err)
	}
	return &Deduplicator{
		pool: pool, consumer: consumer, key: key,
		insert: "INSERT INTO " + table + " (consumer, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
	}, nil
}

// Handler wraps h: each delivery runs in a transaction that first records
// its key; a key already recorded — a duplicate — commits nothing and is
// acknowledged without calling h. Two copies handled at once serialise on
// the record, and the second is skipped.
func (d *Deduplicator) Handler(h TxHandler) bus.Handler {
	return func(ctx context.Context, del bus.Delivery) error {
		key := d.key(del)
		if key == "" { // every such event would look like the first one's duplicate
			return bus.Permanent(fmt.Errorf("bus/postgres: delivery at %s offset %d has no deduplication key", del.Topic, del.Offset))
		}
		return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, d.insert, d.consumer, key)
			if err != nil {
				return fmt.Errorf("bus/postgres: record %s: %w", del.Event.ID, err)
			}
			if tag.RowsAffected() == 0 {
				return nil // processed before
			}
			return h(ctx, tx, del)
		})
	}
}

func ddlLock(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("composable:processed_events:" + schema))
	return int64(h.Sum64())
}

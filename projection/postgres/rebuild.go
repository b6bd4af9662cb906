package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/composable-go/composable/projection"
)

// StartRebuild implements [projection.Rebuilder]. The new generation is
// built in its own schema; queries keep reading the current one until
// FinishRebuild.
func (s *Store) StartRebuild(ctx context.Context, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	building := projection.RebuildName(name)
	var existing string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialise with other StartRebuild and FinishRebuild calls for
		// name through its checkpoint row.
		if _, _, err := s.lock(ctx, tx, name); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, s.q.rebuilding, name).Scan(&existing)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		existing = building
		// Clear whatever an abandoned attempt left behind.
		b := &pgx.Batch{}
		b.Queue("DROP SCHEMA IF EXISTS " + s.quoted(building) + " CASCADE")
		b.Queue(s.q.deleteCheckpoints, []string{building})
		b.Queue(s.q.deleteDeadLetters, []string{building})
		b.Queue(s.q.insertRebuild, name, building)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return "", fmt.Errorf("projection/postgres: start rebuild of %s: %w", name, err)
	}
	return existing, nil
}

// Rebuilding implements [projection.Rebuilder].
func (s *Store) Rebuilding(ctx context.Context, name string) (string, bool, error) {
	var building string
	err := s.pool.QueryRow(ctx, s.q.rebuilding, name).Scan(&building)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("projection/postgres: rebuild of %s: %w", name, err)
	}
	return building, true, nil
}

// FinishRebuild implements [projection.Rebuilder]. In one transaction it
// drops the current model's schema, renames the new generation's schema to
// it, and moves the new generation's checkpoint and dead letters over:
// readers see the old model until the commit and the new one after.
func (s *Store) FinishRebuild(ctx context.Context, name, building string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, _, err := s.lock(ctx, tx, name); err != nil {
			return err
		}
		var current string
		err := tx.QueryRow(ctx, s.q.lockRebuild, name).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && current != building) {
			return fmt.Errorf("%w: no rebuild %q of %s in progress", projection.ErrInvalid, building, name)
		}
		if err != nil {
			return err
		}
		// Lock the generation's checkpoint too: its runner's batch in
		// flight, if any, commits first.
		if _, _, err := s.lock(ctx, tx, building); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue("DROP SCHEMA IF EXISTS " + s.quoted(name) + " CASCADE")
		// A generation that never applied a batch has no schema yet.
		b.Queue("CREATE SCHEMA IF NOT EXISTS " + s.quoted(building))
		b.Queue("ALTER SCHEMA " + s.quoted(building) + " RENAME TO " + s.quoted(name))
		b.Queue(s.q.copyCheckpoint, name, building)
		b.Queue(s.q.deleteDeadLetters, []string{name})
		b.Queue(s.q.moveDeadLetters, name, building)
		b.Queue(s.q.deleteCheckpoints, []string{building})
		b.Queue(s.q.deleteRebuild, name)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		if errors.Is(err, projection.ErrInvalid) {
			return err
		}
		return fmt.Errorf("projection/postgres: finish rebuild of %s: %w", name, err)
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/composable-go/composable/persistence"
)

var (
	_ persistence.CheckpointStore = (*Store)(nil)
	_ persistence.Lease           = (*Store)(nil)
)

// LoadCheckpoint implements [persistence.CheckpointStore].
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := s.pool.QueryRow(ctx, s.q.loadCheckpoint, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: load checkpoint %q: %w", name, err)
	}
	return pos, nil
}

// SaveCheckpoint implements [persistence.CheckpointStore]: an upsert that
// keeps the greater position.
func (s *Store) SaveCheckpoint(ctx context.Context, name string, position int64) error {
	if _, err := s.pool.Exec(ctx, s.q.saveCheckpoint, name, position); err != nil {
		return fmt.Errorf("postgres: save checkpoint %q: %w", name, err)
	}
	return nil
}

// Acquire implements [persistence.Lease] with a session advisory lock, held
// on a connection taken out of the pool for as long as the lease lasts.
// When the holding process dies, PostgreSQL drops the connection and with
// it the lock, and a waiting process takes over at once. The holder blocks
// reading that connection (waiting for a notification that never comes), so
// it learns of a terminated session at once and closes lost. A network
// partition is noticed only when TCP gives up (keepalives): for that long
// two holders may be active — consumers of what a holder does must be
// idempotent anyway.
func (s *Store) Acquire(ctx context.Context, name string) (<-chan struct{}, func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: lease %q: %w", name, err)
	}
	raw := conn.Hijack() // a connection that holds a lock never goes back to the pool
	key := lockKey("lease:"+name, s.cfg.schema)
	if _, err := raw.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		_ = raw.Close(context.Background())
		return nil, nil, fmt.Errorf("postgres: lease %q: %w", name, err)
	}
	lost := make(chan struct{})
	watch, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(lost)
		// Returns with an error when the session dies, or when released.
		for {
			if _, err := raw.WaitForNotification(watch); err != nil {
				return
			}
		}
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			stopWatch()
			wg.Wait()
			_ = raw.Close(context.Background()) // ends the session: the lock goes with it
		})
	}
	return lost, release, nil
}

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/composable-go/composable/persistence"
)

var _ persistence.TimerStore = (*Store)(nil)

// Timers implements [persistence.TimerStore]: an index scan of the
// owner's timers in timer order, from the one after after.
func (s *Store) Timers(ctx context.Context, owner string, after persistence.Timer, limit int) ([]persistence.Timer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	if err := persistence.ValidateTimerCursor(after); err != nil {
		return nil, err
	}
	if !persistence.ValidStreamID(owner) { // PostgreSQL would refuse the text
		return nil, nil
	}
	var out []persistence.Timer
	var err error
	if after.ID == "" {
		out, err = s.queryTimers(ctx, owner, s.q.timers, owner, limit)
	} else {
		out, err = s.queryTimers(ctx, owner, s.q.timersAfter, owner, after.Due.UnixNano(), after.ID, after.Name, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: timers of %q: %w", owner, err)
	}
	return out, nil
}

// Marks implements [persistence.TimerStore]: marks share their due time,
// so the timer index finds the owner's marks, and only them, in id order.
func (s *Store) Marks(ctx context.Context, owner, name, after string, limit int) ([]persistence.Timer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	if !persistence.ValidStreamID(after + "x") {
		return nil, fmt.Errorf("%w: the id to list marks after", persistence.ErrInvalidText)
	}
	if !persistence.ValidStreamID(owner) || !persistence.ValidStreamID(name) {
		return nil, nil // PostgreSQL would refuse the text; no timer has it
	}
	out, err := s.queryTimers(ctx, owner, s.q.marks, owner, name, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: marks %q of %q: %w", name, owner, err)
	}
	return out, nil
}

// queryTimers reads timers of owner: id, name, due_ns and fire_id.
func (s *Store) queryTimers(ctx context.Context, owner, query string, args ...any) ([]persistence.Timer, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []persistence.Timer
	for rows.Next() {
		t := persistence.Timer{Owner: owner}
		var due int64
		if err := rows.Scan(&t.ID, &t.Name, &due, &t.FireID); err != nil {
			return nil, err
		}
		t.Due = time.Unix(0, due).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteTimer implements [persistence.TimerStore].
func (s *Store) DeleteTimer(ctx context.Context, t persistence.Timer) error {
	if err := persistence.ValidateTimers([]persistence.TimerChange{{Timer: t, Cancel: true}}); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.deleteTimer, t.Owner, t.ID, t.Name, t.FireID); err != nil {
		return fmt.Errorf("postgres: delete timer %q of %s/%s: %w", t.Name, t.Owner, t.ID, err)
	}
	return nil
}

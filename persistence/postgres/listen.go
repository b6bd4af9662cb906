package postgres

import (
	"context"
	"time"
)

// startListener runs a goroutine that LISTENs on the store's channel on a
// pooled connection and turns notifications (from any process writing to
// the same schema) into wake-ups. It reconnects after errors, with a pause,
// until Close.
func (s *Store) startListener() {
	ctx, cancel := context.WithCancel(context.Background())
	s.listenStop = cancel
	s.listenDone = make(chan struct{})
	go func() {
		defer close(s.listenDone)
		for ctx.Err() == nil {
			if err := s.listen(ctx); err != nil && ctx.Err() == nil {
				s.cfg.logger.Warn("postgres: notification listener failed; polling continues", "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
}

func (s *Store) listen(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection has a LISTEN on it: never hand it back to the pool.
	defer func() { _ = conn.Hijack().Close(context.Background()) }()
	if _, err := conn.Exec(ctx, `LISTEN "`+s.q.channel+`"`); err != nil {
		return err
	}
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		s.signalAppended()
	}
}

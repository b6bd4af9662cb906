package postgres

import (
	"context"
	"time"
)

// startListener runs a goroutine that LISTENs on the store's channels (new
// events, member changes) on a pooled connection and turns notifications
// (from any process using the same schema) into wake-ups. It reconnects after errors, with a pause,
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
	if _, err := conn.Exec(ctx, `LISTEN "`+s.q.channel+`"; LISTEN "`+s.q.members.channel+`"`); err != nil {
		return err
	}
	// Changes made while no listener ran: wake everyone once.
	s.signalAppended()
	s.signalMembers()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel == s.q.members.channel {
			s.signalMembers()
		} else {
			s.signalAppended()
		}
	}
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence"
)

// The store keeps cluster members (migration 0005) and checks a member's
// fence token in its append transactions.

var (
	_ membership.Store   = (*Store)(nil)
	_ membership.Changes = (*Store)(nil)
)

// fencedCode is the SQLSTATE the schema's fence function raises.
const fencedCode = "CMPFN"

// Join implements [membership.Store]: the row lives until the server's
// clock passes now + ttl.
func (s *Store) Join(ctx context.Context, m membership.Member, ttl time.Duration) (membership.Member, error) {
	if err := membership.Validate(m, ttl); err != nil {
		return membership.Member{}, err
	}
	if m.Kinds == nil {
		m.Kinds = []string{}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, s.q.members.nextGeneration, s.q.members.sequence).Scan(&m.Generation); err != nil {
			return err
		}
		m.ID = membership.MemberID(m.Name, m.Generation)
		if _, err := tx.Exec(ctx, s.q.members.join, m.ID, m.Name, m.Address, m.Kinds, m.Generation, ttl.Microseconds()); err != nil {
			return err
		}
		// Rows expired an hour ago are history: a join sweeps them.
		if _, err := tx.Exec(ctx, s.q.members.sweep); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.q.members.notify, s.q.members.channel)
		return err
	})
	if err != nil {
		return membership.Member{}, fmt.Errorf("postgres: join %s: %w", m.Name, err)
	}
	return m, nil
}

// Renew implements [membership.Store].
func (s *Store) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	if ttl < time.Millisecond || ttl > time.Hour {
		return fmt.Errorf("%w: TTL %v", membership.ErrInvalid, ttl)
	}
	tag, err := s.pool.Exec(ctx, s.q.members.renew, id, generation, ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("postgres: renew %s: %w", persistence.Quote(id), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s (generation %d)", membership.ErrExpired, persistence.Quote(id), generation)
	}
	return nil
}

// Leave implements [membership.Store].
func (s *Store) Leave(ctx context.Context, id string, generation int64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.q.members.leave, id, generation)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, s.q.members.notify, s.q.members.channel)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: leave %s: %w", persistence.Quote(id), err)
	}
	return nil
}

// Members implements [membership.Store].
func (s *Store) Members(ctx context.Context) ([]membership.Member, error) {
	rows, err := s.pool.Query(ctx, s.q.members.list)
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (membership.Member, error) {
		var m membership.Member
		err := row.Scan(&m.ID, &m.Name, &m.Address, &m.Kinds, &m.Generation)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: members: %w", err)
	}
	return out, nil
}

// MembersChanged implements [membership.Changes]: joins and leaves NOTIFY
// every process listening on the schema (expiry does not: readers poll).
// It starts the store's listener.
func (s *Store) MembersChanged() <-chan struct{} {
	if s.cfg.notify {
		s.listenOnce.Do(s.startListener)
	}
	s.wake.Lock()
	defer s.wake.Unlock()
	return s.membersChanged
}

// signalMembers wakes everyone waiting on MembersChanged.
func (s *Store) signalMembers() {
	s.wake.Lock()
	close(s.membersChanged)
	s.membersChanged = make(chan struct{})
	s.wake.Unlock()
}

// fenceToken returns the token to check in a transaction, and an error if
// the store is fenced and the token says the member is out.
func (s *Store) fenceToken() (id string, generation int64, err error) {
	if s.cfg.fence == nil {
		return "", 0, nil
	}
	id, generation, ok := s.cfg.fence()
	if !ok {
		return "", 0, persistence.ErrFenced
	}
	return id, generation, nil
}

// fenced maps the fence function's refusal to ErrFenced.
func fenced(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == fencedCode {
		return fmt.Errorf("%w: %w", persistence.ErrFenced, err) // a statement's refusal, not a broken connection
	}
	return err
}

// memberQueries are the members table's statements.
type memberQueries struct {
	nextGeneration, sequence, join, sweep, renew, leave, list, notify, fence, channel string
}

func newMemberQueries(schema string) memberQueries {
	members := pgx.Identifier{schema, "members"}.Sanitize()
	return memberQueries{
		nextGeneration: "SELECT nextval($1::regclass)",
		sequence:       pgx.Identifier{schema, "member_generations"}.Sanitize(),
		join: "INSERT INTO " + members + " (id, name, address, kinds, generation, expires_at) " +
			"VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::bigint / 1e6))",
		sweep:   "DELETE FROM " + members + " WHERE expires_at < now() - interval '1 hour'",
		renew:   "UPDATE " + members + " SET expires_at = now() + make_interval(secs => $3::bigint / 1e6) WHERE id = $1 AND generation = $2 AND expires_at > now()",
		leave:   "DELETE FROM " + members + " WHERE id = $1 AND generation = $2",
		list:    "SELECT id, name, address, kinds, generation FROM " + members + " WHERE expires_at > now() ORDER BY generation",
		notify:  "SELECT pg_notify($1, '')",
		fence:   "SELECT " + pgx.Identifier{schema, "fence"}.Sanitize() + "($1, $2)",
		channel: fmt.Sprintf("composable_members_%016x", uint64(lockKey("members", schema))),
	}
}

// Package cached keeps projections' read models in PostgreSQL (see
// package projection/postgres) with Redis in front of them for hot reads.
//
// Handlers write the model as with projection/postgres, and name the cache
// keys an event makes stale with [Tx.Invalidate]. Readers call [Store.Get]
// (or [GetJSON]) with a key and a loader: a hit is served from Redis; a
// miss runs the loader on one PostgreSQL snapshot of the model and caches
// its result with a TTL.
//
// # Invalidation
//
// The keys an event invalidates are written to the model's
// cache_invalidations table in the batch's own transaction, and deleted
// once Redis has them: a crash between the commit and Redis loses none,
// because the next batch (or [Store.Flush]) sends what is pending first.
// Redis receives a tombstone carrying the position of the invalidating
// event, not a deletion, and cached values carry the position of the
// snapshot they were read at: a reader whose PostgreSQL snapshot predates
// either cannot put its stale result back in the cache. Tombstones live
// twice the TTL, and a read slower than the TTL is not cached. A rebuild's switch-over bumps the projection's cache epoch, which
// orphans every entry of the old model at once.
//
// A batch whose invalidations cannot reach Redis fails with a store error
// and is retried by the runner: the projection does not move on while its
// cache might serve stale data beyond the TTL. Reads do not depend on
// Redis: when it is unreachable, Get reads PostgreSQL.
package cached

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/postgres"
)

var (
	_ projection.Store[*Tx] = (*Store)(nil)
	_ projection.Rebuilder  = (*Store)(nil)

	_ projection.StreamApplier[*Tx] = (*Store)(nil)
)

// Tx is the transaction a projection's Setup and Handle write through: a
// [postgres.Tx] that also collects the cache keys the event makes stale.
type Tx struct {
	*postgres.Tx
	keys []string
}

// Invalidate marks cache keys of the projection stale: once the batch
// commits, readers no longer get the cached values.
func (t *Tx) Invalidate(keys ...string) { t.keys = append(t.keys, keys...) }

// Store is a PostgreSQL projection store with a Redis cache for reads. It
// is safe for concurrent use.
type Store struct {
	pg     *postgres.Store
	redis  redis.UniversalClient
	prefix string
	ttl    time.Duration
	logger *slog.Logger

	mu       sync.Mutex
	failures map[string]int  // failed flushes per projection
	clean    map[string]bool // nothing pending since the last flush, as far as this process knows
}

// Options configure a Store.
type Options struct {
	// Postgres configures the underlying projection/postgres store.
	Postgres []postgres.Option
	// Prefix prefixes every cache key. Default "cache".
	Prefix string
	// TTL bounds how long an entry is served; default one minute. It also
	// bounds staleness should invalidations be lost with Redis's data.
	TTL time.Duration
	// Logger reports reads that fell back to PostgreSQL. Default
	// slog.Default().
	Logger *slog.Logger
}

// New returns a store on pool and client, creating its PostgreSQL tables
// if need be.
func New(ctx context.Context, pool *pgxpool.Pool, client redis.UniversalClient, opts Options) (*Store, error) {
	if opts.Prefix == "" {
		opts.Prefix = "cache"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("%w: cache key prefix %q: no braces", projection.ErrInvalid, opts.Prefix)
	}
	if opts.TTL == 0 {
		opts.TTL = time.Minute
	}
	if opts.TTL < time.Millisecond {
		return nil, fmt.Errorf("%w: TTL %v: at least a millisecond", projection.ErrInvalid, opts.TTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	pg, err := postgres.New(ctx, pool, opts.Postgres...)
	if err != nil {
		return nil, err
	}
	return &Store{pg: pg, redis: client, prefix: opts.Prefix, ttl: opts.TTL, logger: opts.Logger,
		failures: map[string]int{}, clean: map[string]bool{}}, nil
}

// Postgres returns the underlying store, for queries that bypass the
// cache.
func (s *Store) Postgres() *postgres.Store { return s.pg }

// cacheKey is the Redis key of key in projection name's cache. Callers'
// keys live under "k:", apart from the store's own (epochKey): no key a
// caller picks can overwrite them.
func (s *Store) cacheKey(name, key string) string { return s.prefix + ":{" + name + "}:k:" + key }

// epochKey holds projection name's cache epoch, bumped by each rebuild.
func (s *Store) epochKey(name string) string { return s.prefix + ":{" + name + "}:epoch" }

// Apply implements [projection.Store]: the batch goes to PostgreSQL with
// its invalidations, then the invalidations go to Redis.
func (s *Store) Apply(ctx context.Context, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	var queued bool
	if err := s.pg.Apply(ctx, withInvalidations(p, &queued), events); err != nil {
		return err
	}
	return s.flushAfter(ctx, p.Name, queued)
}

// ApplyEvent implements [projection.StreamApplier], for projections fed
// from the bus: the event goes to PostgreSQL with its invalidations, then
// the invalidations go to Redis.
func (s *Store) ApplyEvent(ctx context.Context, p projection.Projection[*Tx], e persistence.RecordedEvent) error {
	var queued bool
	if err := s.pg.ApplyEvent(ctx, withInvalidations(p, &queued), e); err != nil {
		return err
	}
	return s.flushAfter(ctx, p.Name, queued)
}

// SkipEvent implements [projection.StreamApplier].
func (s *Store) SkipEvent(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	return s.pg.SkipEvent(ctx, name, e, cause)
}

// StreamVersion implements [projection.StreamApplier].
func (s *Store) StreamVersion(ctx context.Context, name, stream string) (int64, error) {
	return s.pg.StreamVersion(ctx, name, stream)
}

// flushAfter flushes name's invalidations after a commit — unless the
// commit queued none and none are pending from before (a crash, a failed
// flush): then there is nothing to read back.
func (s *Store) flushAfter(ctx context.Context, name string, queued bool) error {
	if !projection.ValidName(name) {
		return nil // a generation being built has no cache
	}
	s.mu.Lock()
	skip, failures := !queued && s.clean[name], s.failures[name]
	s.mu.Unlock()
	if skip {
		return nil
	}
	err := s.Flush(ctx, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.failures[name]++
		s.clean[name] = false
		return fmt.Errorf("projection/cached: apply to %s: committed, with its cache invalidations pending: %w", name, err)
	case s.failures[name] == failures: // no flush failed meanwhile
		s.clean[name] = true
	}
	return nil
}

// withInvalidations returns p as a projection/postgres projection whose
// handlers record the cache keys they invalidate in the model's
// cache_invalidations table, in the batch's transaction, and set *queued
// when they do.
func withInvalidations(p projection.Projection[*Tx], queued *bool) projection.Projection[*postgres.Tx] {
	live := projection.ValidName(p.Name) // a generation being built has no cache
	var setupKeys []string               // invalidated by Setup: recorded with the first event
	return projection.Projection[*postgres.Tx]{
		Name:      p.Name,
		OnFailure: p.OnFailure,
		Setup: func(ctx context.Context, tx *postgres.Tx) error {
			if _, err := tx.Exec(ctx, createInvalidations); err != nil {
				return err
			}
			if p.Setup == nil {
				return nil
			}
			t := &Tx{Tx: tx}
			err := p.Setup(ctx, t)
			setupKeys = t.keys
			return err
		},
		Handle: func(ctx context.Context, tx *postgres.Tx, e persistence.RecordedEvent) error {
			t := &Tx{Tx: tx, keys: setupKeys}
			setupKeys = nil
			if err := p.Handle(ctx, t, e); err != nil {
				return err
			}
			if live && len(t.keys) > 0 {
				tx.Queue(insertInvalidation, e.GlobalPosition, t.keys)
				*queued = true
			}
			return nil
		},
	}
}

const (
	createInvalidations = `CREATE TABLE cache_invalidations (position bigint PRIMARY KEY, keys text[] NOT NULL)`
	insertInvalidation  = `INSERT INTO cache_invalidations (position, keys) VALUES ($1, $2) ON CONFLICT (position) DO NOTHING`
)

// tombstoneScript replaces a cache entry by a tombstone carrying the
// position of the event that made it stale, unless a newer tombstone is
// there. ARGV: position, TTL in milliseconds.
var tombstoneScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, 1) == 't' and tonumber(string.sub(cur, 2)) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], 't' .. ARGV[1], 'PX', ARGV[2])
return 1`)

// fillScript caches a value read at a position, unless the entry has been
// invalidated by a later event, holds a value read at a later position, or
// the cache epoch moved since the read. The entry is
// "p<epoch>:<position>:<value>": a hit counts only in its epoch. A
// tombstone it replaces keeps its remaining time if that is longer than
// the TTL: a slower reader may still come by.
// KEYS: entry, epoch. ARGV: value, TTL in milliseconds, position, epoch.
var fillScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[2]) or '0'
if epoch ~= ARGV[4] then return 0 end
local ttl = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur then
  local at
  if string.sub(cur, 1, 1) == 't' then
    at = tonumber(string.sub(cur, 2))
    ttl = math.max(ttl, redis.call('PTTL', KEYS[1]))
  else
    local e, p = string.match(cur, '^p(%d+):(%d+):')
    if e == ARGV[4] then at = tonumber(p) end
  end
  if at and at > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], 'p' .. ARGV[4] .. ':' .. ARGV[3] .. ':' .. ARGV[1], 'PX', ttl)
return 1`)

// Flush sends projection name's pending invalidations to Redis. Apply
// calls it after each batch; call it at start-up to settle what a crash
// left pending before serving reads.
func (s *Store) Flush(ctx context.Context, name string) error {
	if !projection.ValidName(name) {
		return fmt.Errorf("%w: projection name %q", projection.ErrInvalid, name)
	}
	table := pgx.Identifier{s.pg.Schema(name), "cache_invalidations"}.Sanitize()
	rows, err := s.pg.Pool().Query(ctx, "SELECT position, keys FROM "+table+" ORDER BY position")
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01") {
			return nil // no model yet
		}
		return err
	}
	var pos int64
	var keys []string
	latest := map[string]int64{}
	var sent []int64 // exactly the rows read: others may commit meanwhile, at lower positions too
	_, err = pgx.ForEachRow(rows, []any{&pos, &keys}, func() error {
		for _, k := range keys {
			latest[k] = max(latest[k], pos)
		}
		sent = append(sent, pos)
		return nil
	})
	if err != nil || len(latest) == 0 {
		return err
	}
	// A tombstone outlives any read that may predate it: Get does not fill
	// after a read that took longer than the TTL.
	ttl := strconv.FormatInt(2*s.ttl.Milliseconds(), 10)
	pipe := s.redis.Pipeline()
	for k, pos := range latest {
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT.
		tombstoneScript.Eval(ctx, pipe, []string{s.cacheKey(name, k)}, pos, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	_, err = s.pg.Pool().Exec(ctx, "DELETE FROM "+table+" WHERE position = ANY($1)", sent)
	return err
}

// Get returns the value of key in projection name's cache. On a miss it
// runs load in a read-only transaction on one snapshot of the model (see
// [postgres.Store.View]) and caches what it returns for the TTL, unless the
// entry was invalidated meanwhile. When Redis is unreachable, Get logs it
// and returns what load reads.
func (s *Store) Get(ctx context.Context, name, key string, load func(ctx context.Context, tx pgx.Tx) ([]byte, error)) ([]byte, error) {
	if !projection.ValidName(name) {
		return nil, fmt.Errorf("%w: projection name %q", projection.ErrInvalid, name)
	}
	entry, epochKey := s.cacheKey(name, key), s.epochKey(name)
	cached, err := s.redis.MGet(ctx, entry, epochKey).Result()
	redisUp := err == nil
	if !redisUp {
		s.logger.Warn("projection/cached: Redis unreachable; reading PostgreSQL", "projection", name, "error", err)
	}
	var epoch string
	if redisUp {
		epoch, _ = cached[1].(string)
		if epoch == "" {
			epoch = "0"
		}
		if v, ok := cached[0].(string); ok {
			if value, ok := hit(v, epoch); ok {
				return value, nil
			}
		}
	}
	var value []byte
	var at int64
	began := time.Now()
	err = s.pg.View(ctx, name, func(ctx context.Context, tx pgx.Tx, checkpoint int64) error {
		var err error
		value, err = load(ctx, tx)
		at = checkpoint
		return err
	})
	if err != nil {
		return nil, err
	}
	if redisUp && time.Since(began) < s.ttl {
		err := fillScript.Run(ctx, s.redis, []string{entry, epochKey}, value, s.ttl.Milliseconds(), at, epoch).Err()
		if err != nil {
			s.logger.Warn("projection/cached: could not fill the cache", "projection", name, "error", err)
		}
	}
	return value, nil
}

// hit returns the value of a cache entry written in epoch
// ("p<epoch>:<position>:<value>"); tombstones, entries of other epochs and
// anything else are misses.
func hit(entry, epoch string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(entry, "p"+epoch+":")
	if !ok {
		return nil, false
	}
	pos, value, ok := strings.Cut(rest, ":")
	if _, err := strconv.ParseInt(pos, 10, 64); !ok || err != nil {
		return nil, false
	}
	return []byte(value), true
}

// GetJSON is [Store.Get] for values cached as JSON.
func GetJSON[T any](ctx context.Context, s *Store, name, key string, load func(ctx context.Context, tx pgx.Tx) (T, error)) (T, error) {
	var v T
	data, err := s.Get(ctx, name, key, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		v, err := load(ctx, tx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	})
	if err != nil {
		return v, err
	}
	err = json.Unmarshal(data, &v)
	return v, err
}

// Checkpoint implements [projection.Store]. It reports a position only
// once its invalidations have reached Redis: a reader that waited for it
// (see [projection.Runner.WaitFor]) then reads the batch's writes through
// the cache too, not an entry the batch made stale.
func (s *Store) Checkpoint(ctx context.Context, name string) (int64, error) {
	pos, err := s.pg.Checkpoint(ctx, name)
	if err != nil || !projection.ValidName(name) {
		return pos, err
	}
	// Read after the checkpoint: an invalidation at or below pos committed
	// with it, so it is either still pending here or already in Redis.
	table := pgx.Identifier{s.pg.Schema(name), "cache_invalidations"}.Sanitize()
	var pending *int64
	err = s.pg.Pool().QueryRow(ctx, "SELECT min(position) FROM "+table).Scan(&pending)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42P01"):
		return pos, nil // no model yet
	case err != nil:
		return 0, fmt.Errorf("projection/cached: checkpoint of %s: %w", name, err)
	case pending != nil && *pending <= pos:
		return *pending - 1, nil
	}
	return pos, nil
}

// DeadLetter implements [projection.Store].
func (s *Store) DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	return s.pg.DeadLetter(ctx, name, e, cause)
}

// DeadLetters implements [projection.Store].
func (s *Store) DeadLetters(ctx context.Context, name string) ([]projection.DeadLetter, error) {
	return s.pg.DeadLetters(ctx, name)
}

// StartRebuild implements [projection.Rebuilder].
func (s *Store) StartRebuild(ctx context.Context, name string) (string, error) {
	return s.pg.StartRebuild(ctx, name)
}

// Rebuilding implements [projection.Rebuilder].
func (s *Store) Rebuilding(ctx context.Context, name string) (string, bool, error) {
	return s.pg.Rebuilding(ctx, name)
}

// FinishRebuild implements [projection.Rebuilder]: the switch-over in
// PostgreSQL between two new cache epochs, which orphan every entry of the
// old model (they expire with their TTL). The first must succeed, or
// nothing switches; should the second fail, entries read from the old
// model during the switch-over may be served until their TTL ends.
func (s *Store) FinishRebuild(ctx context.Context, name, building string) error {
	if err := s.redis.Incr(ctx, s.epochKey(name)).Err(); err != nil {
		return fmt.Errorf("projection/cached: finish rebuild of %s: new cache epoch: %w", name, err)
	}
	if err := s.pg.FinishRebuild(ctx, name, building); err != nil {
		return err
	}
	if err := s.redis.Incr(ctx, s.epochKey(name)).Err(); err != nil {
		s.logger.Warn("projection/cached: no new cache epoch after the switch-over; old entries expire with their TTL", "projection", name, "error", err)
	}
	return nil
}

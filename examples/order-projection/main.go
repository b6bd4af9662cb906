// Command order-projection builds read models from the order service's
// events (the contract of examples/order-processing) and queries them:
//
//   - order_history, in PostgreSQL (projection/cached): a customer's order
//     history, queryable with SQL, and a "recent orders" view per customer
//     cached in Redis and invalidated as the orders change;
//   - order_stats, in Redis (projection/redis): orders by status.
//
// It appends orders to a PostgreSQL event store, lets the two projection
// runners catch up, waits for its own writes (read-your-writes), shows the
// cache answering and being invalidated, then rebuilds the history while
// it stays readable:
//
//	go run ./examples/order-projection
//
// It needs PostgreSQL and Redis, by default the local ones
// (-postgres-url, -redis-url, or COMPOSABLE_POSTGRES_URL and
// COMPOSABLE_REDIS_URL). It owns schemas order_projection (events)
// and order_projection_rm* (read models) and Redis keys under
// order-projection, and clears them when it starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/examples/internal/app"
	evpostgres "github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/cached"
	"github.com/composable-go/composable/projection/postgres"
	"github.com/composable-go/composable/projection/redis"
)

const (
	envPostgresURL     = "COMPOSABLE_POSTGRES_URL"
	envRedisURL        = "COMPOSABLE_REDIS_URL"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

func main() {
	app.Main("order-projection", func(args []string, usage io.Writer) (config, error) {
		return parseConfig(args, os.Getenv, usage)
	}, run)
}

// config is what the flags select.
type config struct {
	postgresURL, redisURL string
	// schema holds the events; schema+"_rm" prefixes the read models'
	// schemas; the Redis keys are under the schema's name, dashed.
	schema string
}

func parseConfig(args []string, getenv func(string) string, usage io.Writer) (config, error) {
	cfg := config{postgresURL: getenv(envPostgresURL), redisURL: getenv(envRedisURL)}
	if cfg.postgresURL == "" {
		cfg.postgresURL = defaultPostgresURL
	}
	if cfg.redisURL == "" {
		cfg.redisURL = defaultRedisURL
	}
	fs := flag.NewFlagSet("order-projection", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&cfg.postgresURL, "postgres-url", cfg.postgresURL, "PostgreSQL connection string (default from "+envPostgresURL+")")
	fs.StringVar(&cfg.redisURL, "redis-url", cfg.redisURL, "Redis URL (default from "+envRedisURL+")")
	fs.StringVar(&cfg.schema, "schema", "order_projection", "PostgreSQL schema of the events; the read models' schemas start with it and _rm (at most 20 bytes)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.schema == "" || len(cfg.schema) > 20 || strings.ContainsAny(cfg.schema, `"{}`) {
		return config{}, fmt.Errorf("-schema=%q: 1 to 20 bytes, no quotes or braces", cfg.schema)
	}
	return cfg, nil
}

// services are the connections the demo runs on.
type services struct {
	pool   *pgxpool.Pool
	rdb    *goredis.Client
	events *evpostgres.Store
}

// connect opens PostgreSQL and Redis, clears what an earlier run left, and
// opens the event store.
func connect(ctx context.Context, cfg config, logger *slog.Logger) (*services, error) {
	pool, err := pgxpool.New(ctx, cfg.postgresURL)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, fmt.Errorf("PostgreSQL is not reachable (start it, or point -postgres-url or %s at a server): %w", envPostgresURL, err)
	}
	opts, err := goredis.ParseURL(cfg.redisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("-redis-url: %w", err)
	}
	rdb := goredis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		pool.Close()
		return nil, errors.Join(fmt.Errorf("redis is not reachable at %s (start it with redis-server, or point -redis-url or %s at a server): %w", opts.Addr, envRedisURL, err), rdb.Close())
	}
	svc := &services{pool: pool, rdb: rdb}
	if err := reset(ctx, pool, rdb, cfg); err != nil {
		return nil, errors.Join(err, svc.close())
	}
	if svc.events, err = evpostgres.New(ctx, pool, evpostgres.WithSchema(cfg.schema), evpostgres.WithLogger(logger)); err != nil {
		return nil, errors.Join(err, svc.close())
	}
	return svc, nil
}

// reset drops the example's schemas and Redis keys.
func reset(ctx context.Context, pool *pgxpool.Pool, rdb *goredis.Client, cfg config) error {
	rows, err := pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = $1 OR starts_with(nspname, $1 || '_rm')`, cfg.schema)
	if err != nil {
		return err
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range schemas {
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			return err
		}
	}
	iter := rdb.Scan(ctx, 0, redisPrefix(cfg)+":*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := rdb.Unlink(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

func (s *services) close() error {
	var err error
	if s.events != nil {
		err = s.events.Close()
	}
	err = errors.Join(err, s.rdb.Close())
	s.pool.Close()
	return err
}

func redisPrefix(cfg config) string { return strings.ReplaceAll(cfg.schema, "_", "-") }

// run plays the demo, writing what it does to out.
func run(ctx context.Context, out io.Writer, logger *slog.Logger, cfg config) (err error) {
	svc, err := connect(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, svc.close()) }()
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	historyStore, err := cached.New(ctx, svc.pool, svc.rdb, cached.Options{
		Postgres: []postgres.Option{postgres.WithSchema(cfg.schema + "_rm")},
		Prefix:   redisPrefix(cfg) + ":cache",
		TTL:      time.Minute,
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	statsStore, err := redis.New(svc.rdb, redis.WithPrefix(redisPrefix(cfg)+":rm"))
	if err != nil {
		return err
	}
	models := &readModels{history: historyStore, stats: statsStore}
	d := &demo{out: out, events: svc.events, reg: reg, models: models}

	fmt.Fprintf(out, "== the order service appends its events (PostgreSQL, schema %s)\n", cfg.schema)
	if err := d.seed(ctx); err != nil {
		return err
	}

	// The runners: one per projection, each holding its lease (a
	// PostgreSQL advisory lock) so that one process at a time applies it.
	// The demo prints the dead letters itself: the runners' logs would
	// repeat them on stderr.
	quiet := slog.New(slog.DiscardHandler)
	opts := projection.Options{Lease: svc.events, Logger: quiet, PollInterval: 20 * time.Millisecond}
	historyRunner, err := projection.NewRunner(svc.events, historyStore, history(reg), opts)
	if err != nil {
		return err
	}
	statsRunner, err := projection.NewRunner(svc.events, statsStore, stats(reg), opts)
	if err != nil {
		return err
	}
	runCtx, stopRunners := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- historyRunner.Run(runCtx) }()
	go func() { done <- statsRunner.Run(runCtx) }()
	defer func() {
		stopRunners()
		err = errors.Join(err, <-done, <-done)
	}()
	d.history, d.stats = historyRunner, statsRunner
	return d.play(ctx)
}

package cached_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/cached"
)

// A customer's latest orders, kept in PostgreSQL and read through Redis:
// the handler names the cache entry each event makes stale, and readers
// give the query to run on a miss. (Not run: it needs both servers.)
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer func() { _ = client.Close() }()
	store, err := cached.New(ctx, pool, client, cached.Options{})
	if err != nil {
		panic(err)
	}
	recent := projection.Projection[*cached.Tx]{
		Name: "recent_orders",
		Setup: func(ctx context.Context, tx *cached.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE orders (id text PRIMARY KEY, customer text NOT NULL, placed_at timestamptz NOT NULL)`)
			return err
		},
		Handle: func(_ context.Context, tx *cached.Tx, e persistence.RecordedEvent) error {
			if e.Type == "order.placed" {
				customer := e.Metadata["customer"]
				tx.Queue(`INSERT INTO orders VALUES ($1, $2, $3)`, e.StreamID, customer, e.RecordedAt)
				tx.Invalidate("recent:" + customer)
			}
			return nil
		},
	}
	_ = recent // run it with projection.NewRunner(eventStore, store, recent, ...)

	ids, err := cached.GetJSON(ctx, store, "recent_orders", "recent:ada", func(ctx context.Context, tx pgx.Tx) ([]string, error) {
		rows, err := tx.Query(ctx, `SELECT id FROM orders WHERE customer = $1 ORDER BY placed_at DESC LIMIT 5`, "ada")
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	})
	fmt.Println(ids, err)
}

package postgres_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	evpostgres "github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/postgres"
)

// An order count per customer in PostgreSQL: the handler queues an upsert
// per event, sent with the batch's checkpoint in one round trip; queries
// name the model's table through the store. (Not run: it needs a server.)
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	events, err := evpostgres.New(ctx, pool) // the event store: the global feed and the lease
	if err != nil {
		panic(err)
	}
	defer events.Close()
	store, err := postgres.New(ctx, pool) // may be a pool on another database
	if err != nil {
		panic(err)
	}
	counts := projection.Projection[*postgres.Tx]{
		Name: "orders_per_customer",
		Setup: func(ctx context.Context, tx *postgres.Tx) error {
			_, err := tx.Exec(ctx, `CREATE TABLE counts (customer text PRIMARY KEY, orders int NOT NULL)`)
			return err
		},
		Handle: func(_ context.Context, tx *postgres.Tx, e persistence.RecordedEvent) error {
			if e.Type == "order.placed" {
				tx.Queue(`INSERT INTO counts VALUES ($1, 1) ON CONFLICT (customer) DO UPDATE SET orders = counts.orders + 1`,
					e.Metadata["customer"])
			}
			return nil
		},
		OnFailure: projection.SkipAndDeadLetter,
	}
	runner, err := projection.NewRunner(events, store, counts, projection.Options{Lease: events})
	if err != nil {
		panic(err)
	}
	go func() { _ = runner.Run(ctx) }()

	res, err := events.Append(ctx, "order/1", persistence.NoStream, persistence.EventData{
		ID: "placed-1", Type: "order.placed", Data: []byte("{}"), Metadata: map[string]string{"customer": "ada"},
	})
	if err != nil {
		panic(err)
	}
	if err := runner.WaitFor(ctx, res.Position); err != nil { // read your writes
		panic(err)
	}
	var n int
	err = pool.QueryRow(ctx, "SELECT orders FROM "+store.Table("orders_per_customer", "counts")+" WHERE customer = $1", "ada").Scan(&n)
	fmt.Println(n, err)
}

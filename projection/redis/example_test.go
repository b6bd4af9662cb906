package redis_test

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/redis"
)

// Orders by status in a Redis hash: handlers queue commands that do their
// arithmetic server-side, and queries read through the store, which
// resolves the model's current generation. (Not run: it needs a server.)
func Example() {
	ctx := context.Background()
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer func() { _ = client.Close() }()
	store, err := redis.New(client, redis.WithPrefix("shop"))
	if err != nil {
		panic(err)
	}
	stats := projection.Projection[*redis.Tx]{
		Name: "order_stats",
		Handle: func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
			switch e.Type {
			case "order.placed":
				tx.Pipe().HIncrBy(ctx, tx.Key("by-status"), "placed", 1)
			case "order.shipped":
				tx.Pipe().HIncrBy(ctx, tx.Key("by-status"), "placed", -1)
				tx.Pipe().HIncrBy(ctx, tx.Key("by-status"), "shipped", 1)
			}
			return nil
		},
	}
	events := evmemory.New()
	runner, err := projection.NewRunner(events, store, stats, projection.Options{Lease: evmemory.NewLeases()})
	if err != nil {
		panic(err)
	}
	go func() { _ = runner.Run(ctx) }()
	res, err := events.Append(ctx, "order/1", persistence.NoStream, persistence.EventData{ID: "placed-1", Type: "order.placed", Data: []byte("{}")})
	if err != nil {
		panic(err)
	}
	if err := runner.WaitFor(ctx, res.Position); err != nil {
		panic(err)
	}
	placed, err := store.Read(ctx, "order_stats", "HGET", "by-status", "placed").Int()
	fmt.Println(placed, err)
}

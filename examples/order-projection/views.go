package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/cached"
	"github.com/composable-go/composable/projection/redis"
)

// The read models.
const (
	// historyName is the customer order history: one row per order in
	// PostgreSQL, with a Redis-cached "recent orders" view per customer.
	historyName = "order_history"
	// statsName counts orders by status, in Redis.
	statsName = "order_stats"
	// recentLimit is how many orders the recent view holds.
	recentLimit = 3
)

// Order is a row of the order history.
type Order struct {
	ID       string    `json:"id"`
	Customer string    `json:"customer"`
	Status   string    `json:"status"`
	Items    int       `json:"items"`
	Detail   string    `json:"detail,omitempty"` // carrier or cancel reason
	PlacedAt time.Time `json:"placed_at"`
}

// orderID is the order's id: its stream is "order/<id>".
func orderID(stream string) (string, bool) { return strings.CutPrefix(stream, "order/") }

// recentKey is the cache key of a customer's recent orders.
func recentKey(customer string) string { return "recent:" + customer }

// history is the order history projection. Every write names the cache
// entry it makes stale.
func history(reg *persistence.Registry) projection.Projection[*cached.Tx] {
	return projection.Projection[*cached.Tx]{
		Name:      historyName,
		OnFailure: projection.SkipAndDeadLetter, // one bad event must not stop the history
		Setup: func(ctx context.Context, tx *cached.Tx) error {
			_, err := tx.Exec(ctx, `
				CREATE TABLE orders (
					id        text PRIMARY KEY,
					customer  text NOT NULL,
					status    text NOT NULL,
					items     int NOT NULL,
					detail    text NOT NULL DEFAULT '',
					placed_at timestamptz NOT NULL
				);
				CREATE INDEX orders_by_customer ON orders (customer, placed_at DESC, id)`)
			return err
		},
		Handle: projection.Decoded(reg, func(ctx context.Context, tx *cached.Tx, event any, rec persistence.RecordedEvent) error {
			id, ok := orderID(rec.StreamID)
			if !ok {
				return nil
			}
			var customer string
			switch e := event.(type) {
			case OrderPlaced:
				items := 0
				for _, l := range e.Lines {
					items += l.Quantity
				}
				customer = e.Customer
				tx.Queue(`INSERT INTO orders (id, customer, status, items, placed_at) VALUES ($1, $2, 'placed', $3, $4)`,
					id, e.Customer, items, rec.RecordedAt)
			case OrderCancelled:
				if err := tx.QueryRow(ctx, `UPDATE orders SET status = 'cancelled', detail = $2 WHERE id = $1 RETURNING customer`, id, e.Reason).Scan(&customer); err != nil {
					return fmt.Errorf("cancel order %s: %w", id, err)
				}
			case OrderShipped:
				if err := tx.QueryRow(ctx, `UPDATE orders SET status = 'shipped', detail = $2 WHERE id = $1 RETURNING customer`, id, e.Carrier).Scan(&customer); err != nil {
					return fmt.Errorf("ship order %s: %w", id, err)
				}
			default:
				return nil
			}
			tx.Invalidate(recentKey(customer))
			return nil
		}),
	}
}

// stats is the order statistics projection: a Redis hash of counts by
// status, changed with HINCRBY, so the batch's writes need no reads.
func stats(reg *persistence.Registry) projection.Projection[*redis.Tx] {
	return projection.Projection[*redis.Tx]{
		Name:      statsName,
		OnFailure: projection.SkipAndDeadLetter,
		Handle: projection.Decoded(reg, func(ctx context.Context, tx *redis.Tx, event any, _ persistence.RecordedEvent) error {
			pipe, key := tx.Pipe(), tx.Key("by-status")
			switch event.(type) {
			case OrderPlaced:
				pipe.HIncrBy(ctx, key, "placed", 1)
			case OrderCancelled:
				pipe.HIncrBy(ctx, key, "placed", -1)
				pipe.HIncrBy(ctx, key, "cancelled", 1)
			case OrderShipped:
				pipe.HIncrBy(ctx, key, "placed", -1)
				pipe.HIncrBy(ctx, key, "shipped", 1)
			}
			return nil
		}),
	}
}

// readModels are the queries of the two read models.
type readModels struct {
	history *cached.Store
	stats   *redis.Store
	loads   int // recent-orders reads that went to PostgreSQL
}

// History returns every order of customer, newest first, from PostgreSQL.
func (m *readModels) History(ctx context.Context, customer string) ([]Order, error) {
	var orders []Order
	err := m.history.Postgres().View(ctx, historyName, func(ctx context.Context, tx pgx.Tx, _ int64) error {
		var err error
		orders, err = queryOrders(ctx, tx, customer, 1000)
		return err
	})
	return orders, err
}

// Recent returns customer's latest orders, from the Redis cache when it
// has them.
func (m *readModels) Recent(ctx context.Context, customer string) ([]Order, error) {
	return cached.GetJSON(ctx, m.history, historyName, recentKey(customer), func(ctx context.Context, tx pgx.Tx) ([]Order, error) {
		m.loads++
		return queryOrders(ctx, tx, customer, recentLimit)
	})
}

// Stats returns the number of orders by status.
func (m *readModels) Stats(ctx context.Context) (map[string]int, error) {
	flat, err := m.stats.Read(ctx, statsName, "HGETALL", "by-status").StringSlice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, err
	}
	out := map[string]int{}
	for i := 0; i+1 < len(flat); i += 2 {
		var n int
		if err := json.Unmarshal([]byte(flat[i+1]), &n); err != nil {
			return nil, fmt.Errorf("stats %s: %w", flat[i], err)
		}
		out[flat[i]] = n
	}
	return out, nil
}

func queryOrders(ctx context.Context, tx pgx.Tx, customer string, limit int) ([]Order, error) {
	rows, err := tx.Query(ctx, `
		SELECT id, customer, status, items, detail, placed_at FROM orders
		WHERE customer = $1 ORDER BY placed_at DESC, id DESC LIMIT $2`, customer, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Order, error) {
		var o Order
		err := row.Scan(&o.ID, &o.Customer, &o.Status, &o.Items, &o.Detail, &o.PlacedAt)
		return o, err
	})
}

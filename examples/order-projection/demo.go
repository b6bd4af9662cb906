package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/cached"
	"github.com/composable-go/composable/projection/redis"
)

// demo is one run of the demo.
type demo struct {
	out     io.Writer
	events  persistence.EventStore
	reg     *persistence.Registry
	models  *readModels
	history *projection.Runner[*cached.Tx]
	stats   *projection.Runner[*redis.Tx]
}

// order is what the seed writes: a placement and what happened next.
type order struct {
	id   string
	plan []any
}

// seed appends the order service's events for two customers.
func (d *demo) seed(ctx context.Context) error {
	orders := []order{
		{"1001", []any{OrderPlaced{"ada", []Line{{"book", 2}, {"pen", 5}}}, OrderShipped{"DHL"}}},
		{"1002", []any{OrderPlaced{"grace", []Line{{"laptop", 1}}}}},
		{"1003", []any{OrderPlaced{"ada", []Line{{"lamp", 1}}}, OrderCancelled{"found a cheaper one"}}},
		{"1004", []any{OrderPlaced{"ada", []Line{{"desk", 1}, {"chair", 2}}}}},
		{"1005", []any{OrderPlaced{"ada", []Line{{"ink", 3}}}}},
		{"1006", []any{OrderPlaced{"grace", []Line{{"cable", 4}}}, OrderShipped{"UPS"}}},
	}
	for _, o := range orders {
		for _, e := range o.plan {
			res, err := d.append(ctx, o.id, e)
			if err != nil {
				return err
			}
			fmt.Fprintf(d.out, "  order/%s  %-40s position %d\n", o.id, describe(e), res.Position)
		}
	}
	return nil
}

// append appends one event to order id's stream.
func (d *demo) append(ctx context.Context, id string, event any) (persistence.AppendResult, error) {
	data, err := d.reg.Marshal(event)
	if err != nil {
		return persistence.AppendResult{}, err
	}
	data.ID = uuid.NewString()
	return d.events.Append(ctx, "order/"+id, persistence.Any, data)
}

func describe(e any) string {
	switch e := e.(type) {
	case OrderPlaced:
		return fmt.Sprintf("order.placed (%s, %d line(s))", e.Customer, len(e.Lines))
	case OrderShipped:
		return "order.shipped (" + e.Carrier + ")"
	case OrderCancelled:
		return "order.cancelled (" + e.Reason + ")"
	}
	return fmt.Sprintf("%T", e)
}

// play runs the demo's steps once the runners are running.
func (d *demo) play(ctx context.Context) error {
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"the projections catch up (read-your-writes: wait for the last position)", d.catchUp},
		{"ada's order history (PostgreSQL)", d.showHistory},
		{"ada's recent orders, twice (Redis-cached view)", d.showRecent},
		{"ada cancels order 1005: the cache entry is invalidated", d.cancel},
		{"a corrupt event: each projection dead-letters it and goes on", d.corrupt},
		{"orders by status (Redis projection)", d.showStats},
		{"rebuild order_history: queries keep the old model until the switch", d.rebuild},
	}
	for _, s := range steps {
		fmt.Fprintf(d.out, "== %s\n", s.title)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	return nil
}

// waitAll waits until both projections have applied position.
func (d *demo) waitAll(ctx context.Context, position int64) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.history.WaitFor(ctx, position); err != nil {
		return err
	}
	return d.stats.WaitFor(ctx, position)
}

func (d *demo) catchUp(ctx context.Context) error {
	head, err := d.events.(persistence.HeadReader).Head(ctx)
	if err != nil {
		return err
	}
	if err := d.waitAll(ctx, head); err != nil {
		return err
	}
	lag, err := d.history.Lag(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  order_history and order_stats have applied position %d; lag %d\n", head, lag)
	return nil
}

func (d *demo) showHistory(ctx context.Context) error {
	orders, err := d.models.History(ctx, "ada")
	if err != nil {
		return err
	}
	d.table(orders)
	return nil
}

func (d *demo) table(orders []Order) {
	w := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  order\tstatus\titems\tdetail")
	for _, o := range orders {
		fmt.Fprintf(w, "  %s\t%s\t%d\t%s\n", o.ID, o.Status, o.Items, o.Detail)
	}
	_ = w.Flush()
}

// recent reads ada's recent orders and says where they came from.
func (d *demo) recent(ctx context.Context) error {
	before := d.models.loads
	orders, err := d.models.Recent(ctx, "ada")
	if err != nil {
		return err
	}
	from := "the Redis cache"
	if d.models.loads > before {
		from = "PostgreSQL (a miss: now cached)"
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID + " " + o.Status
	}
	fmt.Fprintf(d.out, "  recent orders of ada from %s: %s\n", from, strings.Join(ids, ", "))
	return nil
}

func (d *demo) showRecent(ctx context.Context) error {
	if err := d.recent(ctx); err != nil {
		return err
	}
	return d.recent(ctx)
}

func (d *demo) cancel(ctx context.Context) error {
	res, err := d.append(ctx, "1005", OrderCancelled{"ordered twice"})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  order/1005  %-40s position %d\n", describe(OrderCancelled{"ordered twice"}), res.Position)
	if err := d.waitAll(ctx, res.Position); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  order_history has applied position %d\n", res.Position)
	if err := d.recent(ctx); err != nil {
		return err
	}
	return d.recent(ctx)
}

func (d *demo) corrupt(ctx context.Context) error {
	res, err := d.events.Append(ctx, "order/1007", persistence.Any, persistence.EventData{
		ID: "corrupt-1007", Type: "order.placed", SchemaVersion: 1, Data: []byte(`{"customer": 42`),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  order/1007  %-40s position %d\n", "order.placed (truncated JSON)", res.Position)
	if err := d.waitAll(ctx, res.Position); err != nil {
		return err
	}
	for name, store := range map[string]projection.Store[*cached.Tx]{historyName: d.models.history} {
		if err := d.deadLetters(ctx, name, store.DeadLetters); err != nil {
			return err
		}
	}
	return d.deadLetters(ctx, statsName, d.models.stats.DeadLetters)
}

func (d *demo) deadLetters(ctx context.Context, name string, list func(context.Context, string) ([]projection.DeadLetter, error)) error {
	dead, err := list(ctx, name)
	if err != nil {
		return err
	}
	for _, dl := range dead {
		fmt.Fprintf(d.out, "  %s dead letter: position %d, %s: %s\n", name, dl.Event.GlobalPosition, dl.Event.Type, dl.Error)
	}
	return nil
}

func (d *demo) showStats(ctx context.Context) error {
	stats, err := d.models.Stats(ctx)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(d.out, "  %-10s %d\n", k, stats[k])
	}
	return nil
}

func (d *demo) rebuild(ctx context.Context) error {
	before, err := d.models.History(ctx, "ada")
	if err != nil {
		return err
	}
	if err := d.history.Rebuild(ctx); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "  rebuild started: a new generation is built beside the live one")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// Queries during the rebuild see the whole old model.
		during, err := d.models.History(ctx, "ada")
		if err != nil {
			return err
		}
		if !slices.EqualFunc(during, before, sameOrder) {
			return fmt.Errorf("a query during the rebuild saw %v", during)
		}
		_, going, err := d.models.history.Rebuilding(ctx, historyName)
		if err != nil {
			return err
		}
		if !going {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the rebuild did not finish: %w", ctx.Err())
		case <-tick.C:
		}
	}
	after, err := d.models.History(ctx, "ada")
	if err != nil {
		return err
	}
	if !slices.EqualFunc(after, before, sameOrder) {
		return fmt.Errorf("the rebuilt history differs: %v, was %v", after, before)
	}
	fmt.Fprintf(d.out, "  switched over: the rebuilt history is identical (%d orders of ada)\n", len(after))
	return d.recent(ctx)
}

// sameOrder compares orders but for the placement time's representation.
func sameOrder(a, b Order) bool {
	return a.ID == b.ID && a.Customer == b.Customer && a.Status == b.Status && a.Items == b.Items &&
		a.Detail == b.Detail && a.PlacedAt.Equal(b.PlacedAt)
}

// Command order-processing runs an order aggregate (order.go) over an
// in-memory or a PostgreSQL event store, and shows that an order's state
// survives a restart and that a retried command is not run twice.
//
// In one process, over memory (the "restart" closes the runtime and opens
// a new one over the same store):
//
//	go run ./examples/order-processing
//
// In two processes, over PostgreSQL (schema order_processing_example,
// created on first use; the server from -postgres-url or
// COMPOSABLE_POSTGRES_URL, default the local one):
//
//	go run ./examples/order-processing -store=postgres -phase=place
//	go run ./examples/order-processing -store=postgres -phase=ship
//
// The second process finds the order the first one placed. Running either
// again is safe: the commands carry ids, so the repeats are answered as
// duplicates and write nothing.
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

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence"
)

const (
	storeMemory   = "memory"
	storePostgres = "postgres"

	phaseAll   = "all"
	phasePlace = "place"
	phaseShip  = "ship"

	envPostgresURL     = "COMPOSABLE_POSTGRES_URL"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultSchema      = "order_processing_example"
)

func main() {
	app.Main("order-processing", func(args []string, _ io.Writer) (config, error) {
		return parseConfig(args, os.Getenv) // its flag set writes to stderr itself
	}, func(ctx context.Context, out io.Writer, _ *slog.Logger, cfg config) error {
		return run(ctx, out, cfg)
	})
}

// config is what the flags select.
type config struct {
	store       string // storeMemory or storePostgres
	postgresURL string
	schema      string
	phase       string // phaseAll, phasePlace or phaseShip
	order       string // the order id
}

// parseConfig reads the flags in args, with getenv for the environment.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	url := getenv(envPostgresURL)
	if url == "" {
		url = defaultPostgresURL
	}
	var cfg config
	fs := flag.NewFlagSet("order-processing", flag.ContinueOnError)
	fs.StringVar(&cfg.store, "store", storeMemory, "event store: memory or postgres")
	fs.StringVar(&cfg.postgresURL, "postgres-url", url, "PostgreSQL connection string (default from "+envPostgresURL+")")
	fs.StringVar(&cfg.schema, "schema", defaultSchema, "PostgreSQL schema holding the example's tables")
	fs.StringVar(&cfg.phase, "phase", phaseAll, "all: place, restart, ship in one process; place or ship: one half, for two processes over postgres")
	fs.StringVar(&cfg.order, "order", "1001", "id of the order to place and ship")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, cfg.validate()
}

// validate reports every problem with cfg at once.
func (c config) validate() error {
	var errs []error
	if c.store != storeMemory && c.store != storePostgres {
		errs = append(errs, fmt.Errorf("-store=%q: want memory or postgres", c.store))
	}
	switch c.phase {
	case phaseAll:
	case phasePlace, phaseShip:
		if c.store == storeMemory {
			errs = append(errs, fmt.Errorf("-phase=%s needs -store=postgres: a memory store forgets everything when its process exits", c.phase))
		}
	default:
		errs = append(errs, fmt.Errorf("-phase=%q: want all, place or ship", c.phase))
	}
	if c.order == "" {
		errs = append(errs, errors.New("-order is empty"))
	}
	return errors.Join(errs...)
}

// run places an order with one runtime and ships it with another, over the
// same store, printing what happens to out. cfg.phase selects one half.
func run(ctx context.Context, out io.Writer, cfg config) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, closeStore, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeStore()) }()
	where := "memory"
	if cfg.store == storePostgres {
		where = "postgres, schema " + cfg.schema
	}

	if cfg.phase != phaseShip {
		fmt.Fprintf(out, "== runtime 1 (%s): place order %s\n", where, cfg.order)
		if err := withShop(store, logger, func(s *shop) error { return place(ctx, out, s, cfg.order) }); err != nil {
			return err
		}
	}
	if cfg.phase == phaseAll {
		fmt.Fprintln(out, "== runtime 1 closed: nothing in memory survives but the store")
	}
	if cfg.phase != phasePlace {
		fmt.Fprintf(out, "== runtime 2 (%s): ship order %s\n", where, cfg.order)
		if err := withShop(store, logger, func(s *shop) error { return ship(ctx, out, s, store, cfg.order) }); err != nil {
			return err
		}
	}
	return nil
}

// place tries a bad placement, then places the order and retries that.
func place(ctx context.Context, out io.Writer, s *shop, id string) error {
	bad := PlaceOrder{Customer: "ada", Lines: []Line{{SKU: "book", Quantity: 2}, {SKU: "pen", Quantity: 0}}}
	res, err := s.orders.Send(ctx, id, bad)
	if err := report(out, describe(bad), res, err); err != nil {
		return err
	}
	// The command id names one intent: "place order 1001". A client that
	// timed out sends again with the same id, and gets the original outcome
	// instead of a second order — even from another process, later.
	good := PlaceOrder{Customer: "ada", Lines: []Line{{SKU: "book", Quantity: 2}, {SKU: "pen", Quantity: 5}}}
	cmdID := id + "/place"
	for _, attempt := range []string{"", "retry: "} {
		res, err := s.orders.Send(ctx, id, good, aggregate.WithCommandID(cmdID))
		if err := report(out, fmt.Sprintf("%s%s [command id %s]", attempt, describe(good), cmdID), res, err); err != nil {
			return err
		}
	}
	return nil
}

// ship finds the order placed by an earlier runtime, ships it, tries to
// cancel it and prints its stream.
func ship(ctx context.Context, out io.Writer, s *shop, store persistence.EventStore, id string) error {
	res, err := s.orders.State(ctx, id)
	if err != nil {
		return err
	}
	o := res.State
	if o.Status == StatusNone {
		return fmt.Errorf("order %s was never placed in this store: run -phase=place first", id)
	}
	fmt.Fprintf(out, "  rebuilt from the store: order %s is %s, for %s, %d line(s), version %d\n", id, o.Status, o.Customer, len(o.Lines), res.Version)

	cmd := ShipOrder{Carrier: "DHL"}
	cmdID := id + "/ship"
	res, err = s.orders.Send(ctx, id, cmd, aggregate.WithCommandID(cmdID))
	if err := report(out, fmt.Sprintf("%s [command id %s]", describe(cmd), cmdID), res, err); err != nil {
		return err
	}
	cancel := CancelOrder{Reason: "changed my mind"}
	res, err = s.orders.Send(ctx, id, cancel)
	if err := report(out, describe(cancel), res, err); err != nil {
		return err
	}

	stored, err := store.Load(ctx, s.orders.Stream(id), 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  stream %s:\n", s.orders.Stream(id))
	for _, e := range stored {
		fmt.Fprintf(out, "    %d %-15s %s (command id %s)\n", e.Version, e.Type, e.Data, e.Metadata[persistence.MetadataCommandID])
	}
	return nil
}

// report prints a command's outcome. Rejections are part of the demo;
// other errors are returned.
func report(out io.Writer, what string, res aggregate.Result[Order, Event], err error) error {
	var rej *aggregate.RejectedError
	switch {
	case errors.As(err, &rej):
		fmt.Fprintf(out, "  %s\n      -> rejected: %v\n", what, rej.Err)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case res.Duplicate:
		fmt.Fprintf(out, "  %s\n      -> duplicate: handled before, nothing written (it recorded %s at version %d)\n", what, describeAll(res.Events), res.Version)
	default:
		fmt.Fprintf(out, "  %s\n      -> %s (version %d)\n", what, describeAll(res.Events), res.Version)
	}
	return nil
}

// describe prints a command or event as Type{Field:value ...}.
func describe(v any) string {
	return strings.TrimPrefix(fmt.Sprintf("%T%+v", v, v), "main.")
}

func describeAll(events []Event) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = describe(e)
	}
	return strings.Join(s, ", ")
}

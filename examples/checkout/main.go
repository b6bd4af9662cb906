// Command checkout runs a checkout saga across three event-sourced
// aggregates — an order, the payment for it and the stock of a SKU — the
// way it runs in production: the aggregates append their events to the
// event store, a relay publishes them from the store's feed to a bus, and
// the saga (saga.Run) consumes them, dispatching commands back to the aggregates
// through the runtime, arming a durable timer and compensating when things
// go wrong.
//
// It plays the saga's three paths and prints every step as it happens —
// each command, event, bus delivery, timer and compensation:
//
//  1. happy path: the chairs ordered are out of stock, the reservation
//     waits, the warehouse restocks, the order is confirmed;
//  2. payment declined: the saga cancels the order and releases the stock;
//  3. the reservation times out: the sofa never arrives, the "reservation"
//     timer fires, the saga cancels the order, refunds the payment and
//     releases the reservation.
//
// On embedded defaults — memory event store, memory bus, wall clock with
// a 2 s reservation timeout — it needs nothing but Go:
//
//	go run ./examples/checkout
//
// -postgres keeps the events in PostgreSQL (schema checkout_example,
// created on first use, never dropped; each run uses fresh ids), with the
// relay's checkpoint and lease in the store; -kafka uses the Kafka bus,
// either on brokers (host:port,...) or on an in-process Kafka-protocol
// broker (franz-go's kfake) with -kafka=embedded:
//
//	go run ./examples/checkout -postgres postgres://postgres@127.0.0.1:5432/test?sslmode=disable -kafka=embedded
//
// The timeline is read from the event store's global feed, so what it
// prints is what was committed, in commit order. The saga framework does
// not export its own event types; the timeline decodes them from their
// stored JSON (saga.dispatched, saga.timer-fired, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/bus/kafka"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/examples/internal/app"
)

const (
	defaultSchema = "checkout_example"
	kafkaEmbedded = "embedded"
)

func main() { app.Main("checkout", parseConfig, run) }

// config is what the flags select.
type config struct {
	postgresURL string // empty: the memory store
	schema      string
	kafka       string // empty: the memory bus; "embedded" or broker addresses
	timeout     time.Duration
}

// parseConfig reads the flags in args, writing usage and flag errors to
// usage.
func parseConfig(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&cfg.postgresURL, "postgres", "", "PostgreSQL connection string; empty keeps the events in memory")
	fs.StringVar(&cfg.schema, "schema", defaultSchema, "PostgreSQL schema holding the example's tables")
	fs.StringVar(&cfg.kafka, "kafka", "", `Kafka bus: "embedded" for an in-process broker, or broker addresses host:port,...; empty uses the memory bus`)
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Second, "how long the saga waits for the stock to be reserved")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, cfg.validate()
}

// validate reports every problem with c at once.
func (c config) validate() error {
	var errs []error
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout=%v: must be positive", c.timeout))
	}
	if c.postgresURL != "" && c.schema == "" {
		errs = append(errs, errors.New("-schema is empty"))
	}
	return errors.Join(errs...)
}

// run opens the store and the bus cfg selects, runs a service over them
// and plays the demo, writing the timeline to out.
func run(ctx context.Context, out io.Writer, logger *slog.Logger, cfg config) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	be, where := app.Memory(), "memory"
	tag := "" // ids carry a tag over PostgreSQL, so that runs do not meet
	if cfg.postgresURL != "" {
		if be, err = app.Postgres(ctx, cfg.postgresURL, cfg.schema, logger); err != nil {
			return err
		}
		where = "PostgreSQL (schema " + cfg.schema + ")"
		tag = "-" + strings.ToLower(fmt.Sprintf("%x", time.Now().UnixMilli()%0xfffff))
	}
	defer func() { err = errors.Join(err, be.Close()) }()

	b, busName, closeBus, err := openBus(ctx, cfg.kafka, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeBus()) }()

	clock := composable.SystemClock()
	tl, err := newTimeline(out, be.Store, clock)
	if err != nil {
		return err
	}
	if err := tl.skipHistory(ctx); err != nil {
		return err
	}
	tlCtx, stopTimeline := context.WithCancel(ctx)
	tlDone := make(chan error, 1)
	go func() { tlDone <- tl.run(tlCtx) }()
	defer func() {
		stopTimeline()
		err = errors.Join(err, <-tlDone)
	}()

	tl.printf("checkout example — event store: %s · bus: %s · reservation timeout %v\n", where, busName, cfg.timeout)
	tl.printf("  aggregates ─append─▶ event store ─relay─▶ bus ─saga.Run─▶ checkout saga ─commands─▶ aggregates\n")
	tl.printf("  %8s  %-25s %-8s %s\n", "time", "stream", "kind", "what happened")
	svc, err := openService(be, b, settings{clock: clock, reservationTimeout: cfg.timeout, payments: defaultPayments, logger: logger, sagaFeed: tl.tap})
	if err != nil {
		return err
	}
	running, stopService := svc.start(ctx)
	defer func() { err = errors.Join(err, stopService()) }()
	return playDemo(running, tl, svc, tag, cfg.timeout)
}

// openBus opens the bus spec names: the memory bus, the in-process Kafka
// broker, or Kafka brokers. closeBus closes it (and stops the broker).
func openBus(ctx context.Context, spec string, logger *slog.Logger) (b eventBus, name string, closeBus func() error, err error) {
	if spec == "" {
		return busmemory.New(), "memory", func() error { return nil }, nil
	}
	addrs, name := strings.Split(spec, ","), "Kafka at "+spec
	stopBroker := func() {}
	if spec == kafkaEmbedded {
		// kfake speaks the Kafka protocol in-process; testkit/kafkatest wraps
		// it for tests but needs a testing.TB.
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, "", nil, fmt.Errorf("embedded Kafka broker: %w", err)
		}
		addrs, name, stopBroker = cluster.ListenAddrs(), "Kafka (embedded broker at "+strings.Join(cluster.ListenAddrs(), ",")+")", cluster.Close
	}
	kb, err := kafka.New(ctx, kafka.Config{Brokers: addrs, Partitions: 4, Logger: logger})
	if err != nil {
		stopBroker()
		return nil, "", nil, err
	}
	// The saga fails on a topic that does not exist; the relay publishes
	// the aggregates' events only (see domainEvent).
	if err := kb.CreateTopics(ctx, domainTopics()...); err != nil {
		err = errors.Join(err, kb.Close())
		stopBroker()
		return nil, "", nil, err
	}
	return kb, name, func() error {
		err := kb.Close()
		stopBroker()
		return err
	}, nil
}

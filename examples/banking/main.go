// Command banking moves money between accounts with a saga. Accounts
// (account.go) and transfer requests (transfer.go) are aggregates; a
// request's TransferRequested event goes from the event store through the
// relay and a bus to the transfer saga (saga.go), which debits the source,
// credits the target, and refunds the source when the credit is refused.
//
// It opens three accounts — alice and bob with money, carol closed — and
// runs three transfers: one that succeeds, one to the closed account (the
// debit is refunded) and one beyond the balance (refused at the first
// step, nothing to undo), printing each step and the balances.
//
//	go run ./examples/banking
//
// The events are in memory by default. With -postgres they go to
// PostgreSQL (schema banking_example, created on first use), and the relay
// keeps its checkpoint and lease in the store:
//
//	go run ./examples/banking -postgres postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//
// Running it again there is safe: every command carries an id, so the
// repeats are answered as duplicates and no money moves twice.
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

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/saga"
)

const defaultSchema = "banking_example"

func main() { app.Main("banking", parseConfig, run) }

// config is what the flags select.
type config struct {
	postgresURL string // empty: the memory store
	schema      string
}

// parseConfig reads the flags in args, writing usage and flag errors to
// usage.
func parseConfig(args []string, usage io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("banking", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&cfg.postgresURL, "postgres", "", "PostgreSQL connection string; empty keeps the events in memory")
	fs.StringVar(&cfg.schema, "schema", defaultSchema, "PostgreSQL schema holding the example's tables")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, nil
}

// opening is a command that sets up an account for the demo.
type opening struct {
	account string
	cmd     AccountCommand
}

// openings are the accounts the demo starts with.
var openings = []opening{
	{"alice", OpenAccount{Owner: "Alice"}},
	{"alice", Deposit{Amount: 100_00}},
	{"bob", OpenAccount{Owner: "Bob"}},
	{"bob", Deposit{Amount: 50_00}},
	{"carol", OpenAccount{Owner: "Carol"}},
	{"carol", CloseAccount{}},
}

// demoTransfer is one transfer the demo requests.
type demoTransfer struct {
	id, title string
	req       RequestTransfer
}

// demoTransfers are the three paths of the saga.
var demoTransfers = []demoTransfer{
	{"t1", "succeeds", RequestTransfer{From: "alice", To: "bob", Amount: 30_00}},
	{"t2", "to a closed account: the credit is refused, the debit refunded", RequestTransfer{From: "alice", To: "carol", Amount: 20_00}},
	{"t3", "beyond the balance: refused at the first step, nothing to undo", RequestTransfer{From: "bob", To: "alice", Amount: 500_00}},
}

// sagaTimeout bounds how long a transfer may take to end.
const sagaTimeout = 30 * time.Second

// run opens the store cfg selects and plays the demo, writing what happens
// to out.
func run(ctx context.Context, out io.Writer, logger *slog.Logger, cfg config) error {
	be := app.Memory()
	where := "memory store, memory bus"
	if cfg.postgresURL != "" {
		var err error
		if be, err = app.Postgres(ctx, cfg.postgresURL, cfg.schema, logger); err != nil {
			return err
		}
		where = "PostgreSQL schema " + cfg.schema + ", memory bus"
	}
	fmt.Fprintf(out, "== bank on %s\n", where)
	err := withBank(ctx, be, logger, func(ctx context.Context, b *bank) error { return demo(ctx, out, b) })
	return errors.Join(err, be.Close())
}

// demo opens the accounts, runs the transfers and checks that no money was
// made or lost.
func demo(ctx context.Context, out io.Writer, b *bank) error {
	accounts := []string{"alice", "bob", "carol"}
	fmt.Fprintln(out, "== accounts")
	for i, o := range openings {
		// The command id makes a second run of the demo over PostgreSQL a
		// duplicate, answered without writing anything.
		res, err := b.accounts.Send(ctx, o.account, o.cmd, aggregate.WithCommandID(fmt.Sprintf("demo/%s/%d", o.account, i)))
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.account, describe(o.cmd), err)
		}
		fmt.Fprintf(out, "  %-14s %-26s -> %s%s\n", b.accounts.Stream(o.account), describe(o.cmd), describeAll(res.Events), duplicate(res.Duplicate))
	}
	before, err := total(ctx, b, accounts)
	if err != nil {
		return err
	}
	for _, t := range demoTransfers {
		if err := transfer(ctx, out, b, t); err != nil {
			return err
		}
	}
	after, err := total(ctx, b, accounts)
	if err != nil {
		return err
	}
	if before != after {
		return fmt.Errorf("money was not conserved: %s in the accounts before the transfers, %s after", before, after)
	}
	fmt.Fprintf(out, "== money is conserved: %s in the accounts before the transfers, %s after\n", before, after)
	return nil
}

// transfer requests t, waits for its saga to end and prints what it did.
func transfer(ctx context.Context, out io.Writer, b *bank, t demoTransfer) error {
	fmt.Fprintf(out, "== transfer %s: %s from %s to %s, %s\n", t.id, t.req.Amount, t.req.From, t.req.To, t.title)
	res, err := b.transfers.Send(ctx, t.id, t.req, aggregate.WithCommandID(t.id+"/request"))
	if err != nil {
		return fmt.Errorf("%s: %w", describe(t.req), err)
	}
	fmt.Fprintf(out, "  %s\n      -> %s %s%s\n", describe(t.req), b.transfers.Stream(t.id), describeAll(res.Events), duplicate(res.Duplicate))
	inst, err := b.awaitEnd(ctx, t.id, sagaTimeout)
	if err != nil {
		return err
	}
	if err := trace(ctx, out, b, inst); err != nil {
		return err
	}
	from, err := b.balance(ctx, t.req.From)
	if err != nil {
		return err
	}
	to, err := b.balance(ctx, t.req.To)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  balances: %s %s, %s %s\n", t.req.From, from, t.req.To, to)
	return nil
}

// trace prints the steps an ended saga took — each command, with the
// events it appended or its refusal — then the compensations and the end.
// The saga runtime keeps an instance's history to itself, so trace puts it
// together from the saga's state (its steps, the one refused) and the
// accounts' streams (the events each step's command id appended).
func trace(ctx context.Context, out io.Writer, b *bank, inst saga.Instance[Progress]) error {
	p := inst.State
	// The compensations of the steps, undone newest first if the saga
	// compensates, under the step names the framework gives them.
	var compensations []saga.Command
	var names []string
	for _, step := range steps(p) {
		names = append(names, step.Step)
		if step.Compensation != nil {
			c := *step.Compensation
			c.Step = saga.CompensationStep(step.Step)
			compensations = append([]saga.Command{c}, compensations...)
			names = append(names, c.Step)
		}
	}
	done := map[string]map[string][]AccountEvent{} // account -> step -> events
	for _, account := range []string{p.From, p.To} {
		events, err := b.stepEvents(ctx, account, inst.ID, names)
		if err != nil {
			return err
		}
		done[account] = events
	}
	for _, step := range steps(p) {
		fmt.Fprintf(out, "  step %-6s %s to %s\n", step.Step, describe(step.Command), b.accounts.Stream(step.ID))
		events := done[step.ID][step.Step]
		if len(events) == 0 {
			switch {
			case p.Refused.Step == step.Step:
				fmt.Fprintln(out, "      -> refused")
			case inst.Status == saga.Failed:
				fmt.Fprintln(out, "      -> failed")
			}
			break // refused, failed, or never reached
		}
		fmt.Fprintf(out, "      -> %s\n", describeAll(events))
	}
	for _, c := range compensations {
		if events := done[c.ID][c.Step]; len(events) > 0 {
			fmt.Fprintf(out, "  compensation %s to %s\n      -> %s\n", describe(c.Command), b.accounts.Stream(c.ID), describeAll(events))
		}
	}
	if inst.Reason == "" {
		fmt.Fprintf(out, "  saga %s\n", inst.Status)
	} else {
		fmt.Fprintf(out, "  saga %s: %s\n", inst.Status, inst.Reason)
	}
	return nil
}

// total sums the balances of accounts.
func total(ctx context.Context, b *bank, accounts []string) (Money, error) {
	var sum Money
	for _, a := range accounts {
		m, err := b.balance(ctx, a)
		if err != nil {
			return 0, err
		}
		sum += m
	}
	return sum, nil
}

// duplicate marks a command answered from an earlier run.
func duplicate(dup bool) string {
	if dup {
		return " (duplicate: handled in an earlier run, nothing written)"
	}
	return ""
}

// describe prints a command or event as Type{Field:value ...}.
func describe(v any) string { return strings.TrimPrefix(fmt.Sprintf("%T%+v", v, v), "main.") }

// describeAll describes events, comma-separated.
func describeAll[E any](events []E) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = describe(e)
	}
	return strings.Join(s, ", ")
}

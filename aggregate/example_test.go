package aggregate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// An invoice that must be paid within a term: placing it arms a durable
// timer, paying disarms it, and the timer's firing marks it overdue.

type invoice struct {
	Due     time.Time
	Paid    bool
	Overdue bool
}

type invoiceCmd interface{ isInvoiceCmd() }

type (
	issue    struct{ Term time.Duration }
	pay      struct{}
	termOver struct{ Due time.Time } // what the timer sends
)

func (issue) isInvoiceCmd()    {}
func (pay) isInvoiceCmd()      {}
func (termOver) isInvoiceCmd() {}

type invoiceEvent interface{ isInvoiceEvent() }

type (
	Issued      struct{ Due time.Time }
	Paid        struct{}
	WentOverdue struct{}
)

func (Issued) isInvoiceEvent()      {}
func (Paid) isInvoiceEvent()        {}
func (WentOverdue) isInvoiceEvent() {}

type invoiceEnv struct{ Now func() time.Time }

func invoiceDefinition(env invoiceEnv) aggregate.Definition[invoice, invoiceCmd, invoiceEvent, invoiceEnv] {
	reg := persistence.NewRegistry()
	must(persistence.Register[Issued](reg, "invoice.issued"))
	must(persistence.Register[Paid](reg, "invoice.paid"))
	must(persistence.Register[WentOverdue](reg, "invoice.overdue"))
	type decision = aggregate.Decision[invoiceCmd, invoiceEvent]
	return aggregate.Definition[invoice, invoiceCmd, invoiceEvent, invoiceEnv]{
		Type: "invoice",
		Handle: func(s invoice, c invoiceCmd, env invoiceEnv) (decision, error) {
			switch c := c.(type) {
			case issue:
				due := env.Now().Add(c.Term)
				return aggregate.Emit[invoiceCmd, invoiceEvent](Issued{Due: due}).Arm("term", due), nil
			case pay:
				return aggregate.Emit[invoiceCmd, invoiceEvent](Paid{}).Disarm("term"), nil
			case termOver:
				if s.Paid || !s.Due.Equal(c.Due) {
					return decision{}, nil // paid, or re-issued, meanwhile
				}
				return aggregate.Emit[invoiceCmd, invoiceEvent](WentOverdue{}), nil
			}
			return decision{}, fmt.Errorf("unknown command %T", c)
		},
		Apply: func(s *invoice, e invoiceEvent) {
			switch e := e.(type) {
			case Issued:
				s.Due = e.Due
			case Paid:
				s.Paid = true
			case WentOverdue:
				s.Overdue = true
			}
		},
		OnTimer: func(_ string, due time.Time) invoiceCmd { return termOver{Due: due} },
		Events:  reg,
		Env:     env,
	}
}

// ExampleDecision_Arm arms a durable timer with an invoice's term. The
// timer is a row written with the invoice's events, so it fires even if
// the invoice was passivated, evicted or the process restarted; here a
// manual clock moves time.
func ExampleDecision_Arm() {
	ctx := context.Background()
	clock := testkit.NewManualClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
	sys := actor.NewSystem()
	defer func() { _ = sys.Close() }()
	rt := aggregate.NewRuntime(sys, memory.New(), aggregate.WithClock(clock))
	defer func() { _ = rt.Close() }()
	invoices, err := aggregate.Register(rt, invoiceDefinition(invoiceEnv{Now: clock.Now}), aggregate.Options{})
	if err != nil {
		panic(err)
	}
	_, _ = invoices.Send(ctx, "paid-on-time", issue{Term: 14 * 24 * time.Hour})
	_, _ = invoices.Send(ctx, "never-paid", issue{Term: 14 * 24 * time.Hour})
	_, _ = invoices.Send(ctx, "paid-on-time", pay{})

	clock.Advance(15 * 24 * time.Hour)
	// The scheduler fires on a goroutine of its own: give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range []string{"paid-on-time", "never-paid"} {
		res, _ := invoices.State(ctx, id)
		for !res.State.Paid && !res.State.Overdue && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			res, _ = invoices.State(ctx, id)
		}
		fmt.Printf("%s: paid %v, overdue %v\n", id, res.State.Paid, res.State.Overdue)
	}
	// Output:
	// paid-on-time: paid true, overdue false
	// never-paid: paid false, overdue true
}

package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/composable-go/composable/saga"
)

// demoPath is one way a checkout can go, and how it must end.
type demoPath struct {
	title   string
	order   string
	place   PlaceOrder
	restock int // units the warehouse brings once the reservation waits; 0 for none
	status  saga.Status
	reason  string // a fragment of the saga's reason
}

// demoPaths are the saga's three paths.
var demoPaths = []demoPath{
	{
		title: "happy path: 2 chairs, none in stock — the warehouse restocks in time",
		order: "1001", place: PlaceOrder{Customer: "ada", SKU: "chair", Quantity: 2, Amount: 80_00, Card: cardOK},
		restock: 5, status: saga.Completed,
	},
	{
		title: "payment declined: 1 lamp, on a card the payment provider declines",
		order: "1002", place: PlaceOrder{Customer: "bob", SKU: "lamp", Quantity: 1, Amount: 35_00, Card: cardDeclined},
		status: saga.Failed, reason: "payment refused: card declined",
	},
	{
		title: "reservation times out: 1 sofa, none in stock and none coming",
		order: "1003", place: PlaceOrder{Customer: "cy", SKU: "sofa", Quantity: 1, Amount: 450_00, Card: cardOK},
		status: saga.Failed, reason: "stock not held within",
	},
}

// demoWait bounds each wait of the demo beyond the reservation timeout.
const demoWait = 30 * time.Second

// playDemo stocks the warehouse and plays the three paths, ids tagged with
// tag, and checks that each ends as it should.
func playDemo(ctx context.Context, tl *timeline, svc *service, tag string, timeout time.Duration) error {
	tl.header("setup: the warehouse stocks 3 lamps; chairs and sofas are out of stock")
	if err := demoCommand(ctx, tl, svc, inventoryType, "lamp"+tag, Restock{Quantity: 3}); err != nil {
		return err
	}
	// The saga consumes the inventory's topic, so the stock arriving is the
	// sign that its consumer group is up (on Kafka, joining takes a moment).
	wait := time.NewTimer(demoWait)
	defer wait.Stop()
	select {
	case <-tl.consuming:
	case <-wait.C:
		return fmt.Errorf("the saga received nothing from the bus within %v", demoWait)
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tl.catchUp(ctx); err != nil {
		return err
	}
	tl.note("bus", "ready", "the saga's consumer group saga."+checkoutType+" receives the feed")

	for i, p := range demoPaths {
		if err := playPath(ctx, tl, svc, fmt.Sprintf("%d. %s", i+1, p.title), p, tag, timeout); err != nil {
			return err
		}
	}
	tl.printf("\n── all three paths ended as expected\n")
	return nil
}

// playPath places p's order, restocks once its reservation waits if p
// says so, and waits for the saga to end.
func playPath(ctx context.Context, tl *timeline, svc *service, title string, p demoPath, tag string, timeout time.Duration) error {
	tl.header(title)
	order, place := p.order+tag, p.place
	place.SKU += tag
	if err := demoCommand(ctx, tl, svc, orderType, order, place); err != nil {
		return err
	}
	if p.restock > 0 {
		err := poll(ctx, timeout+demoWait, func(ctx context.Context) (bool, error) {
			res, err := svc.inventory.State(ctx, place.SKU)
			return err == nil && waitingIndex(res.State.Waiting, order) >= 0, nil
		})
		if err != nil {
			return fmt.Errorf("order %s: the reservation never waited for stock: %w", order, err)
		}
		if err := demoCommand(ctx, tl, svc, inventoryType, place.SKU, Restock{Quantity: p.restock}); err != nil {
			return err
		}
	}
	inst, err := svc.awaitEnd(ctx, order, timeout+demoWait)
	if err != nil {
		return err
	}
	if err := tl.catchUp(ctx); err != nil {
		return err
	}
	settleCtx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	if err := tl.settle(settleCtx); err != nil {
		return fmt.Errorf("order %s: %w", order, err)
	}
	state, err := outcome(ctx, svc, order, place.SKU)
	if err != nil {
		return err
	}
	tl.printf("  ⇒ saga %s · %s\n", inst.Status, state)
	if inst.Status != p.status || !strings.Contains(inst.Reason, p.reason) {
		return fmt.Errorf("order %s: saga %s (%q), want %s (%q)", order, inst.Status, inst.Reason, p.status, p.reason)
	}
	return nil
}

// demoCommand sends cmd as the demo — a customer or the warehouse —
// once the timeline has printed everything before it.
func demoCommand(ctx context.Context, tl *timeline, svc *service, aggregateType, id string, cmd any) error {
	if err := tl.catchUp(ctx); err != nil {
		return err
	}
	tl.note("demo", "command", fmt.Sprintf("%s → %s/%s", describe(cmd), aggregateType, id))
	if _, err := svc.rt.Send(ctx, aggregateType, id, cmd); err != nil {
		return fmt.Errorf("%s to %s/%s: %w", describe(cmd), aggregateType, id, err)
	}
	return nil
}

// outcome describes where a checkout left the order, its payment and the
// SKU's stock.
func outcome(ctx context.Context, svc *service, order, sku string) (string, error) {
	o, err := svc.orders.State(ctx, order)
	if err != nil {
		return "", err
	}
	p, err := svc.payments.State(ctx, order)
	if err != nil {
		return "", err
	}
	inv, err := svc.inventory.State(ctx, sku)
	if err != nil {
		return "", err
	}
	pay := "never charged"
	switch p.State.Status {
	case PaymentCharged:
		pay = "charged " + p.State.Amount.String()
	case PaymentRefunded:
		pay = "charged and refunded " + p.State.Amount.String()
	}
	return fmt.Sprintf("order %s · payment %s · %s: %d held for the order, %d on hand, %d waiting",
		o.State.Status, pay, sku, inv.State.Held[order], inv.State.OnHand, len(inv.State.Waiting)), nil
}

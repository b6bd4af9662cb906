package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/saga"
)

// testOpenings are main's accounts — alice 100.00, bob 50.00, carol
// closed — and dave, frozen with 10.00. erin has no account.
var testOpenings = append(slices.Clone(openings),
	opening{"dave", OpenAccount{Owner: "Dave"}},
	opening{"dave", Deposit{Amount: 10_00}},
	opening{"dave", FreezeAccount{Reason: "audit"}},
)

var testAccounts = []string{"alice", "bob", "carol", "dave", "erin"}

// openAccounts sends testOpenings.
func openAccounts(ctx context.Context, b *bank) error {
	for _, o := range testOpenings {
		if _, err := b.accounts.Send(ctx, o.account, o.cmd); err != nil {
			return fmt.Errorf("%s %s: %w", o.account, describe(o.cmd), err)
		}
	}
	return nil
}

// balances returns the balance of every test account.
func balances(ctx context.Context, t *testing.T, b *bank) map[string]Money {
	t.Helper()
	out := map[string]Money{}
	for _, a := range testAccounts {
		m, err := b.balance(ctx, a)
		if err != nil {
			t.Fatalf("balance of %s: %v", a, err)
		}
		out[a] = m
	}
	return out
}

func sum(balances map[string]Money) Money {
	var s Money
	for _, m := range balances {
		s += m
	}
	return s
}

// awaitSaga waits until the saga of transfer id has ended.
func awaitSaga(ctx context.Context, t *testing.T, b *bank, id string) saga.Instance[Progress] {
	t.Helper()
	inst, err := b.awaitEnd(ctx, id, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// transferPath is one way a transfer can go, and where it leaves the money.
type transferPath struct {
	name   string
	id     string
	req    RequestTransfer
	status saga.Status
	reason []string // fragments of the saga's reason
	moved  Money    // from req.From to req.To
}

var transferPaths = []transferPath{
	{"succeeds", "t1", RequestTransfer{From: "alice", To: "bob", Amount: 30_00}, saga.Completed, nil, 30_00},
	{"closed target: the debit is refunded", "t2", RequestTransfer{From: "alice", To: "carol", Amount: 20_00},
		saga.Failed, []string{"credit refused: ", ErrClosed.Error()}, 0},
	{"frozen target: the debit is refunded", "t3", RequestTransfer{From: "alice", To: "dave", Amount: 20_00},
		saga.Failed, []string{"credit refused: ", ErrFrozen.Error()}, 0},
	{"unknown target: the debit is refunded", "t4", RequestTransfer{From: "bob", To: "erin", Amount: 50_00},
		saga.Failed, []string{"credit refused: ", ErrNoAccount.Error()}, 0},
	{"insufficient funds: nothing to undo", "t5", RequestTransfer{From: "bob", To: "alice", Amount: 500_00},
		saga.Failed, []string{"debit refused: ", ErrInsufficientFunds.Error(), "need 500.00"}, 0},
}

// checkPath runs one transfer on b, which holds testOpenings, and checks
// the saga's end and the balances.
func checkPath(ctx context.Context, t *testing.T, b *bank, p transferPath) {
	t.Helper()
	before := balances(ctx, t, b)
	if _, err := b.transfers.Send(ctx, p.id, p.req, aggregate.WithCommandID(p.id+"/request")); err != nil {
		t.Fatalf("%s: %v", describe(p.req), err)
	}
	inst := awaitSaga(ctx, t, b, p.id)
	if inst.Status != p.status {
		t.Errorf("%s: saga %s (%q), want %s", p.id, inst.Status, inst.Reason, p.status)
	}
	for _, r := range p.reason {
		if !strings.Contains(inst.Reason, r) {
			t.Errorf("%s: reason %q lacks %q", p.id, inst.Reason, r)
		}
	}
	if p.reason == nil && inst.Reason != "" {
		t.Errorf("%s: reason %q, want none", p.id, inst.Reason)
	}
	want := maps.Clone(before)
	want[p.req.From] -= p.moved
	want[p.req.To] += p.moved
	got := balances(ctx, t, b)
	for _, a := range testAccounts {
		if got[a] != want[a] {
			t.Errorf("%s: %s has %s, want %s", p.id, a, got[a], want[a])
		}
	}
	if sum(got) != sum(before) {
		t.Errorf("%s: money not conserved: %s before, %s after", p.id, sum(before), sum(got))
	}
}

// TestTransferPathsInMemory sends each transfer through the production
// path — transfer aggregate, memory store, relay, memory bus, saga.Run —
// on a fresh bank.
func TestTransferPathsInMemory(t *testing.T) {
	for _, p := range transferPaths {
		t.Run(p.name, func(t *testing.T) {
			err := withBank(testContext(t), app.Memory(), quiet(), func(ctx context.Context, b *bank) error {
				if err := openAccounts(ctx, b); err != nil {
					return err
				}
				checkPath(ctx, t, b, p)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestConcurrentTransfersConserveMoney requests many transfers at once,
// some bound to fail, and checks that when all have ended every completed
// one moved its amount, no other moved anything, and the total is intact.
func TestConcurrentTransfersConserveMoney(t *testing.T) {
	// alice and bob pay each other and the others: carol (closed), dave
	// (frozen) and erin (no account) refuse credits; either may run short.
	var reqs []RequestTransfer
	for i := range 40 {
		from, to := testAccounts[i%2], testAccounts[(i/2)%5]
		if from == to {
			to = testAccounts[1-i%2]
		}
		reqs = append(reqs, RequestTransfer{From: from, To: to, Amount: Money(i%5+1) * 6_00})
	}
	err := withBank(testContext(t), app.Memory(), quiet(), func(ctx context.Context, b *bank) error {
		if err := openAccounts(ctx, b); err != nil {
			return err
		}
		before := balances(ctx, t, b)
		var wg sync.WaitGroup
		for i, req := range reqs {
			wg.Go(func() {
				if _, err := b.transfers.Send(ctx, fmt.Sprint("c", i), req); err != nil {
					t.Errorf("%s: %v", describe(req), err)
				}
			})
		}
		wg.Wait()
		want, completed := maps.Clone(before), 0
		for i, req := range reqs {
			inst := awaitSaga(ctx, t, b, fmt.Sprint("c", i))
			switch {
			case inst.Status == saga.Completed:
				want[req.From] -= req.Amount
				want[req.To] += req.Amount
				completed++
			case strings.Contains(inst.Reason, "then "): // a refund failed
				t.Errorf("c%d %s: %s", i, describe(req), inst.Reason)
			}
		}
		got := balances(ctx, t, b)
		for _, a := range testAccounts {
			if got[a] != want[a] || got[a] < 0 {
				t.Errorf("%s has %s, want %s", a, got[a], want[a])
			}
		}
		if sum(got) != sum(before) {
			t.Errorf("money not conserved: %s before, %s after", sum(before), sum(got))
		}
		t.Logf("%d of %d transfers completed", completed, len(reqs))
		if completed == 0 || completed == len(reqs) {
			t.Errorf("%d of %d transfers completed: the test wants both outcomes", completed, len(reqs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Package membershiptest is the conformance suite every membership store
// passes: generations, renewal, expiry that is final, leaving, hostile
// input and concurrent joins.
package membershiptest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/cluster/membership"
)

// Harness is a store under test and a way to let time pass on its clock.
type Harness struct {
	// Store is fresh and empty.
	Store membership.Store
	// Wait lets at least d pass on the store's clock: a manual clock's
	// Advance, or — for a store that uses its server's clock — a real
	// wait, so keep the suite's TTLs short.
	Wait func(d time.Duration)
	// TTL is the time to live the suite uses: short, but long enough for
	// a few of the store's round trips.
	TTL time.Duration
}

// Run runs the suite; newHarness returns a fresh harness per case.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"JoinOrdersByGeneration", testJoin},
		{"RenewKeepsAlive", testRenew},
		{"ExpiryIsFinal", testExpiry},
		{"LeaveIsImmediate", testLeave},
		{"InvalidMembersAreRefused", testInvalid},
		{"ConcurrentJoins", testConcurrentJoins},
		{"ChangesAreHinted", testChanges},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newHarness(t)) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ids(ms []membership.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s@%d", m.ID, m.Generation))
	}
	return strings.Join(out, " ")
}

func members(t *testing.T, h Harness) []membership.Member {
	t.Helper()
	ms, err := h.Store.Members(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func join(t *testing.T, h Harness, name string) membership.Member {
	t.Helper()
	m, err := h.Store.Join(ctxFor(t), membership.Member{Name: name, Address: "127.0.0.1:9" + fmt.Sprint(len(name)), Kinds: []string{"order", "saga-checkout"}}, h.TTL)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != membership.MemberID(name, m.Generation) || m.Name != name {
		t.Fatalf("joined as %q (name %q, generation %d)", m.ID, m.Name, m.Generation)
	}
	return m
}

// testJoin: each join gets a higher generation and its own id, also for a
// node that joins again under its name; the list holds the members by
// generation, with their name, address and kinds.
func testJoin(t *testing.T, h Harness) {
	a := join(t, h, "node-a")
	b := join(t, h, "node-b")
	if a.Generation <= 0 || b.Generation <= a.Generation {
		t.Fatalf("generations %d then %d, want increasing from 1", a.Generation, b.Generation)
	}
	a2 := join(t, h, "node-a") // the same node, restarted before its record expired
	ms := members(t, h)
	if len(ms) != 3 || ms[0].ID != a.ID || ms[1].ID != b.ID || ms[2].ID != a2.ID || a2.ID == a.ID || ms[0].Generation != a.Generation ||
		ms[0].Name != "node-a" || ms[0].Address != a.Address || strings.Join(ms[1].Kinds, ",") != "order,saga-checkout" {
		t.Fatalf("members %+v", ms)
	}
}

// testRenew: renewing every TTL/2 keeps a member alive over several TTLs.
func testRenew(t *testing.T, h Harness) {
	a := join(t, h, "node-a")
	for range 4 {
		h.Wait(h.TTL / 2)
		if err := h.Store.Renew(ctxFor(t), a.ID, a.Generation, h.TTL); err != nil {
			t.Fatalf("renewal within the TTL: %v", err)
		}
	}
	if ms := members(t, h); len(ms) != 1 {
		t.Fatalf("members %s after renewals", ids(ms))
	}
	if err := h.Store.Renew(ctxFor(t), a.ID, a.Generation+1, h.TTL); !errors.Is(err, membership.ErrExpired) {
		t.Fatalf("renewal under another generation = %v, want ErrExpired", err)
	}
}

// testExpiry: a member not renewed within its TTL is gone, and renewing
// it afterwards fails for good; the others stay.
func testExpiry(t *testing.T, h Harness) {
	a := join(t, h, "node-a")
	h.Wait(h.TTL / 2)
	b := join(t, h, "node-b")
	h.Wait(h.TTL/2 + h.TTL/10)
	if err := h.Store.Renew(ctxFor(t), b.ID, b.Generation, h.TTL); err != nil {
		t.Fatal(err)
	}
	ms := members(t, h)
	if len(ms) != 1 || ms[0].ID != b.ID {
		t.Fatalf("members %s, want only %s: %s expired", ids(ms), b.ID, a.ID)
	}
	for range 2 {
		if err := h.Store.Renew(ctxFor(t), a.ID, a.Generation, h.TTL); !errors.Is(err, membership.ErrExpired) {
			t.Fatalf("renewal after expiry = %v, want ErrExpired", err)
		}
	}
	if ms := members(t, h); len(ms) != 1 {
		t.Fatalf("an expired member came back: %s", ids(ms))
	}
	c := join(t, h, "node-a") // joining again: a new id, a new generation
	if c.Generation <= b.Generation || c.ID == a.ID {
		t.Fatalf("rejoined at generation %d, not above %d", c.Generation, b.Generation)
	}
}

// testLeave: leaving removes the member at once; leaving again, or under
// another generation, changes nothing.
func testLeave(t *testing.T, h Harness) {
	a := join(t, h, "node-a")
	b := join(t, h, "node-b")
	if err := h.Store.Leave(ctxFor(t), b.ID, b.Generation+7); err != nil {
		t.Fatal(err)
	}
	if ms := members(t, h); len(ms) != 2 {
		t.Fatalf("leaving under another generation removed a member: %s", ids(ms))
	}
	for range 2 {
		if err := h.Store.Leave(ctxFor(t), a.ID, a.Generation); err != nil {
			t.Fatal(err)
		}
	}
	if ms := members(t, h); len(ms) != 1 || ms[0].ID != b.ID {
		t.Fatalf("members %s after %s left", ids(ms), a.ID)
	}
	if err := h.Store.Renew(ctxFor(t), a.ID, a.Generation, h.TTL); !errors.Is(err, membership.ErrExpired) {
		t.Fatalf("renewal after leaving = %v, want ErrExpired", err)
	}
}

// testInvalid: ids, addresses and kinds that are empty, too long or not
// printable, and TTLs out of range, are refused and record nothing.
func testInvalid(t *testing.T, h Harness) {
	for _, m := range []membership.Member{
		{Name: ""},
		{Name: strings.Repeat("x", membership.MaxNameLength+1)},
		{Name: "a\x00b"},
		{Name: "a b"},
		{Name: "é"},
		{Name: "ok", Address: "bad\naddress"},
		{Name: "ok", Kinds: []string{""}},
		{Name: "ok", Kinds: []string{"k\xff"}},
	} {
		if _, err := h.Store.Join(ctxFor(t), m, h.TTL); !errors.Is(err, membership.ErrInvalid) {
			t.Fatalf("Join(%q, %q, %q) = %v, want ErrInvalid", m.Name, m.Address, m.Kinds, err)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, 2 * time.Hour} {
		if _, err := h.Store.Join(ctxFor(t), membership.Member{Name: "ok"}, ttl); !errors.Is(err, membership.ErrInvalid) {
			t.Fatalf("Join with TTL %v = %v, want ErrInvalid", ttl, err)
		}
	}
	if ms := members(t, h); len(ms) != 0 {
		t.Fatalf("refused joins recorded %s", ids(ms))
	}
}

// testConcurrentJoins: members joining at once all get distinct
// generations, and every one is listed.
func testConcurrentJoins(t *testing.T, h Harness) {
	const n = 30
	var wg sync.WaitGroup
	gens := make([]int64, n)
	for i := range n {
		wg.Go(func() {
			m, err := h.Store.Join(ctxFor(t), membership.Member{Name: fmt.Sprint("node-", i)}, h.TTL)
			if err != nil {
				t.Error(err)
				return
			}
			gens[i] = m.Generation
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, g := range gens {
		if g <= 0 || seen[g] {
			t.Fatalf("generations %v: not distinct", gens)
		}
		seen[g] = true
	}
	if ms := members(t, h); len(ms) != n {
		t.Fatalf("%d members listed, want %d", len(ms), n)
	}
}

// testChanges: a store that hints at changes does so after a join and a
// leave.
func testChanges(t *testing.T, h Harness) {
	c, ok := h.Store.(membership.Changes)
	if !ok {
		t.Skip("the store gives no change hints") // allowed by the contract: readers poll
	}
	for _, change := range []func(){
		func() { join(t, h, "node-a") },
		func() { m := members(t, h)[0]; _ = h.Store.Leave(ctxFor(t), m.ID, m.Generation) },
	} {
		hint := c.MembersChanged()
		change()
		select {
		case <-hint:
		case <-ctxFor(t).Done():
			t.Fatal("no hint after a change")
		}
	}
}

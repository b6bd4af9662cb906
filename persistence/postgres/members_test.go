package postgres

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/cluster/membership/membershiptest"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestMembersConformance: the members table passes the membership suite.
// Expiry follows the server's clock, so the suite waits in real time,
// with a TTL of a few hundred milliseconds.
func TestMembersConformance(t *testing.T) {
	pool := pgtest.Pool(t)
	membershiptest.Run(t, func(t *testing.T) membershiptest.Harness {
		return membershiptest.Harness{Store: newStore(t, pool, pgtest.Schema(t, pool, "members")), Wait: time.Sleep, TTL: time.Second}
	})
}

// TestFenceRefusesAnExpiredMembersWrites: a store fenced by a member's
// token appends while the member is alive; once its row expired — the
// node froze and did not renew — every append fails with ErrFenced and
// writes nothing, on the synchronous and the asynchronous path; once the
// node knows it is out, appends fail without a round trip.
func TestFenceRefusesAnExpiredMembersWrites(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "fence")
	members := newStore(t, pool, schema)
	ctx := ctxFor(t)
	const ttl = 300 * time.Millisecond
	m, err := members.Join(ctx, membership.Member{Name: "node-a", Address: "127.0.0.1:1"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	var out atomic.Bool
	s := newStore(t, pool, schema, WithFence(func() (string, int64, bool) { return m.ID, m.Generation, !out.Load() }))
	if _, err := s.Append(ctx, "order/1", persistence.NoStream, ev("e1")); err != nil {
		t.Fatalf("append while alive: %v", err)
	}
	time.Sleep(ttl + 100*time.Millisecond) // frozen: no renewal
	if _, err := s.Append(ctx, "order/1", 1, ev("e2")); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("append after the membership expired = %v, want ErrFenced", err)
	}
	done := make(chan error, 1)
	if err := s.AppendAsync(ctx, "order/2", persistence.NoStream, []persistence.EventData{ev("e3")}, func(_ persistence.AppendResult, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("async append after expiry = %v, want ErrFenced", err)
	}
	if evs, err := s.Load(ctx, "order/1", 1); err != nil || len(evs) != 1 {
		t.Fatalf("order/1 holds %d events (%v), want only the one appended while alive", len(evs), err)
	}
	if _, err := s.Load(ctx, "order/2", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("a fenced async append wrote: %v", err)
	}
	if err := members.Renew(ctx, m.ID, m.Generation, ttl); !errors.Is(err, membership.ErrExpired) {
		t.Fatalf("renewal after expiry = %v, want ErrExpired", err)
	}
	out.Store(true)
	if _, err := s.Append(ctx, "order/3", persistence.NoStream, ev("e4")); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("append of a node that knows it is out = %v, want ErrFenced", err)
	}
	// Joined again: appends go through under the new token.
	m, err = members.Join(ctx, membership.Member{Name: "node-a", Address: "127.0.0.1:1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	out.Store(false)
	if _, err := s.Append(ctx, "order/1", 1, ev("e2")); err != nil {
		t.Fatalf("append after joining again: %v", err)
	}
}

// TestFenceIsCheckedLastBeforeCommit: a writer that stalls after its
// insert, until its member's row expired — a GC pause, a frozen process —
// does not commit: the fence runs right before COMMIT.
func TestFenceIsCheckedLastBeforeCommit(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "fence_late")
	members := newStore(t, pool, schema)
	ctx := ctxFor(t)
	const ttl = 300 * time.Millisecond
	m, err := members.Join(ctx, membership.Member{Name: "node-a"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, pool, schema, WithFence(func() (string, int64, bool) { return m.ID, m.Generation, true }))
	s.beforeCommit = func() error { time.Sleep(ttl + 100*time.Millisecond); return nil } // stalled before COMMIT
	if _, err := s.Append(ctx, "order/1", persistence.NoStream, ev("late")); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("an append whose member expired before its COMMIT = %v, want ErrFenced", err)
	}
	if _, err := s.Load(ctx, "order/1", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("the late append wrote: %v", err)
	}
}

// TestFencedAppendsAreNotRetried: a fenced append fails at once, asking
// for the token once: no retry as if the connection broke, which would
// hold up every append queued behind it.
func TestFencedAppendsAreNotRetried(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "fence_once")
	members := newStore(t, pool, schema)
	ctx := ctxFor(t)
	m, err := members.Join(ctx, membership.Member{Name: "node-a"}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	s := newStore(t, pool, schema, WithFence(func() (string, int64, bool) { asked.Add(1); return m.ID, m.Generation, true }))
	if _, err := s.Append(ctx, "warm", persistence.NoStream, ev("w")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // expired
	asked.Store(0)
	if _, err := s.Append(ctx, "order/1", persistence.NoStream, ev("x")); !errors.Is(err, persistence.ErrFenced) {
		t.Fatalf("append = %v, want ErrFenced", err)
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("a fenced append was attempted %d times, want once", n)
	}
	// A node that knows it is out.
	var askedOut atomic.Int32
	out := newStore(t, pool, schema, WithFence(func() (string, int64, bool) { askedOut.Add(1); return "", 0, false }))
	if _, err := out.Append(ctx, "order/2", persistence.NoStream, ev("y")); !errors.Is(err, persistence.ErrFenced) || askedOut.Load() != 1 {
		t.Fatalf("append of a node that is out = %v after %d attempts, want ErrFenced after one", err, askedOut.Load())
	}
}

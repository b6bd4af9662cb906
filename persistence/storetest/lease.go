package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// RunCheckpoints checks a [persistence.CheckpointStore]: a missing
// checkpoint reads 0, saves are read back, names are independent, and
// checkpoints never move backwards.
func RunCheckpoints(t *testing.T, newStore func(t *testing.T) persistence.CheckpointStore) {
	t.Helper()
	t.Run("Checkpoints", func(t *testing.T) {
		s := newStore(t)
		ctx := ctxFor(t)
		load := func(name string) int64 {
			t.Helper()
			p, err := s.LoadCheckpoint(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		if p := load("relay"); p != 0 {
			t.Fatalf("missing checkpoint = %d, want 0", p)
		}
		for _, step := range []struct {
			save, want int64
		}{{10, 10}, {25, 25}, {20, 25}, {25, 25}, {26, 26}} {
			if err := s.SaveCheckpoint(ctx, "relay", step.save); err != nil {
				t.Fatal(err)
			}
			if p := load("relay"); p != step.want {
				t.Fatalf("after saving %d: %d, want %d (checkpoints only move forward)", step.save, p, step.want)
			}
		}
		if p := load("projection"); p != 0 {
			t.Fatalf("names are not independent: %d", p)
		}
	})
}

// RunLease checks a [persistence.Lease]: one holder at a time, waiters take
// over on release, Acquire honours its context, and a revoked holder sees
// lost closed. revoke makes the current holder of name lose it the way the
// backend loses leases (a killed connection, say).
func RunLease(t *testing.T, newLease func(t *testing.T) persistence.Lease, revoke func(t *testing.T, l persistence.Lease, name string)) {
	t.Helper()
	t.Run("Lease", func(t *testing.T) {
		l := newLease(t)
		ctx := ctxFor(t)
		_, release, err := l.Acquire(ctx, "relay")
		if err != nil {
			t.Fatal(err)
		}
		// Another name is independent.
		_, releaseOther, err := l.Acquire(ctx, "projection")
		if err != nil {
			t.Fatal(err)
		}
		releaseOther()
		// A second holder waits...
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, _, err = l.Acquire(short, "relay")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Acquire while held: %v, want DeadlineExceeded", err)
		}
		// ...and takes over once the first releases.
		got := make(chan func(), 1)
		go func() {
			_, r, err := l.Acquire(ctx, "relay")
			if err != nil {
				t.Error(err)
				return
			}
			got <- r
		}()
		release()
		release() // idempotent
		var release2 func()
		select {
		case release2 = <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("waiter did not take over after release")
		}
		release2()

		if revoke == nil {
			return
		}
		lost, release3, err := l.Acquire(ctx, "relay")
		if err != nil {
			t.Fatal(err)
		}
		defer release3()
		revoke(t, l, "relay")
		select {
		case <-lost:
		case <-time.After(30 * time.Second):
			t.Fatal("a revoked holder was not told it lost the lease")
		}
		_, release4, err := l.Acquire(ctx, "relay")
		if err != nil {
			t.Fatalf("acquire after the holder lost it: %v", err)
		}
		release4()
	})
}

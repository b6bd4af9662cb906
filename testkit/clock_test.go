package testkit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/composable-go/composable/testkit"
)

func TestManualClockFiresTimersInDueOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	c := testkit.NewManualClock(start)
	late, early, same := c.After(3*time.Second), c.After(time.Second), c.After(time.Second)
	if c.Pending() != 3 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Advance(500 * time.Millisecond)
	select {
	case <-early:
		t.Fatal("fired early")
	default:
	}
	c.Advance(2 * time.Second)
	if got := <-early; !got.Equal(start.Add(time.Second)) {
		t.Fatalf("early fired with %v", got)
	}
	if got := <-same; !got.Equal(start.Add(time.Second)) {
		t.Fatalf("same fired with %v", got)
	}
	if !c.Now().Equal(start.Add(2500 * time.Millisecond)) {
		t.Fatalf("now %v", c.Now())
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Advance(time.Hour)
	<-late
}

func TestManualClockZeroDurationFiresAtOnce(t *testing.T) {
	c := testkit.NewManualClock(time.Unix(0, 0))
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire")
	}
	if c.Pending() != 0 {
		t.Fatal("After(0) left a pending timer")
	}
}

func TestManualClockBlockUntil(t *testing.T) {
	c := testkit.NewManualClock(time.Unix(0, 0))
	go func() { c.After(time.Second) }()
	if err := c.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

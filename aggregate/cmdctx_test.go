package aggregate

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestCommandContext(t *testing.T) {
	var w watchdog
	defer w.close()
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))

	c := w.start(parent, time.Hour)
	cancelParent() // the caller gives up: the command's store calls go on
	if c.Value(ctxKey{}) != "v" || c.Err() != nil {
		t.Fatalf("value %v, err %v", c.Value(ctxKey{}), c.Err())
	}
	if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Fatalf("deadline %v, %v", d, ok)
	}
	w.fire() // a stale firing: the deadline has not passed
	if c.Err() != nil {
		t.Fatal("a firing before the deadline ended the command")
	}
	w.stop(c)
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("after the command: %v", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done open after the command")
	}

	// An overrun: the entity's timer ends the context.
	c2 := w.start(context.Background(), time.Millisecond)
	select {
	case <-c2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline passed and Done stayed open")
	}
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Fatalf("overrun: %v", c2.Err())
	}
	w.stop(c2)
	if !errors.Is(c2.Err(), context.DeadlineExceeded) {
		t.Fatalf("stop changed the reason: %v", c2.Err())
	}
	// The next command starts fresh.
	c3 := w.start(context.Background(), time.Hour)
	if c3.Err() != nil {
		t.Fatalf("next command: %v", c3.Err())
	}
	w.stop(c3)
}

package composable

import (
	"context"
	"testing"
	"time"
)

// fakeClock fires every timer at once; it is enough to exercise the
// registry without the test kit (which imports this package).
type fakeClock struct{}

func (fakeClock) Now() time.Time                       { return time.Unix(0, 0) }
func (fakeClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) } // never fires

func TestCancellationRegistryIsEmptyAfterEffectsEnd(t *testing.T) {
	r := NewEffectRunner(fakeClock{}, func(context.Context, string) {})
	defer r.Close()
	done := make(chan error, 3)
	finish := func(err error) { done <- err }
	r.Start(context.Background(), Cancellable("a", Send("x")), finish)                               // ends at once
	r.Start(context.Background(), Cancellable("b", Delay(time.Hour, Send("y"))), finish)             // cancelled below
	r.Start(context.Background(), inScope(7, Cancellable("c", Delay(time.Hour, Send("z")))), finish) // cancelled by scope
	if n := r.x.registered(); n != 3 {                                                               // b, and the scope with c inside it
		t.Fatalf("registered %d, want 3", n)
	}
	r.Start(context.Background(), Cancel[string]("b"), nil)
	r.Start(context.Background(), cancelScope[string]([]any{7}), nil)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.x.registered(); n != 0 {
		t.Fatalf("registry holds %d entries after every effect ended", n)
	}
}

package saga

import (
	"errors"
	"fmt"
	"testing"

	"github.com/composable-go/composable/aggregate"
)

func TestRejectionsAreNeverRetried(t *testing.T) {
	// A handler may reject with an error that wraps an infrastructure one;
	// it is still a rejection: retrying cannot change the decision.
	rej := &aggregate.RejectedError{Type: "wallet", ID: "a", Err: fmt.Errorf("limits service: %w", aggregate.ErrUnavailable)}
	if transient(rej) {
		t.Fatal("a rejection was deemed transient")
	}
	if !transient(fmt.Errorf("send: %w", aggregate.ErrUnavailable)) {
		t.Fatal("an unavailable store was not deemed transient")
	}
	r := resultOf("debit", rej)
	if !r.Rejected || r.Error != rej.Err.Error() {
		t.Fatalf("result %+v", r)
	}
	if err := r.err(); !errors.Is(err, aggregate.ErrRejected) || err.Error() != rej.Err.Error() {
		t.Fatalf("rebuilt error %v", err)
	}
	other := resultOf("debit", errors.New("boom"))
	if other.Rejected || errors.Is(other.err(), aggregate.ErrRejected) {
		t.Fatalf("a plain failure became a rejection: %+v", other)
	}
}

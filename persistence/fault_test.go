package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/composable-go/composable/persistence"
)

// TestFaultOf: the caller's input, the data, and everything else — the
// one place that decides whose fault a failure is.
func TestFaultOf(t *testing.T) {
	type placed struct{ ID string }
	reg := persistence.NewRegistry()
	if err := persistence.Register[placed](reg, "placed"); err != nil {
		t.Fatal(err)
	}
	_, decodeErr := reg.Unmarshal(persistence.EventData{Type: "placed", SchemaVersion: 1, Data: []byte(`{"ID": 4`)})
	tests := []struct {
		err  error
		want persistence.Fault
	}{
		{persistence.ErrEventTooLarge, persistence.FaultInput},
		{fmt.Errorf("aggregate x: %w", persistence.ErrReservedMetadata), persistence.FaultInput},
		{persistence.ValidateAppend("", persistence.Any, nil, 0), persistence.FaultInput},
		{decodeErr, persistence.FaultData},
		{fmt.Errorf("wrapped: %w", persistence.ErrCorrupt), persistence.FaultData},
		{context.DeadlineExceeded, persistence.FaultInfrastructure},
		{errors.New("connection reset by peer"), persistence.FaultInfrastructure},
		{&persistence.ConcurrencyError{Stream: "s"}, persistence.FaultInfrastructure},
	}
	for _, tt := range tests {
		if got := persistence.FaultOf(tt.err); got != tt.want {
			t.Errorf("FaultOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if decodeErr == nil || !errors.Is(decodeErr, persistence.ErrCorrupt) {
		t.Fatalf("a decode failure %v does not match ErrCorrupt", decodeErr)
	}
}

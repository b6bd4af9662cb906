package memory_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/persistence/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memory.New() })
}

func TestCheckpointsAndLeases(t *testing.T) {
	storetest.RunCheckpoints(t, func(*testing.T) persistence.CheckpointStore { return memory.NewCheckpoints() })
	storetest.RunLease(t, func(*testing.T) persistence.Lease { return memory.NewLeases() },
		func(_ *testing.T, l persistence.Lease, name string) { l.(*memory.Leases).Revoke(name) })
}

func FuzzAppendLoad(f *testing.F) { storetest.Fuzz(f, memory.New()) }

// TestEventChecksCompose: checks given in several options all run.
func TestEventChecksCompose(t *testing.T) {
	refuse := func(typ string) persistence.EventCheck {
		return func(_ string, e persistence.EventData) error {
			if e.Type == typ {
				return errors.New("no " + typ)
			}
			return nil
		}
	}
	s := memory.New(memory.WithEventCheck(refuse("a")), memory.WithEventCheck(refuse("b")))
	for _, typ := range []string{"a", "b"} {
		if _, err := s.Append(context.Background(), "s", persistence.Any, persistence.EventData{ID: typ, Type: typ}); !errors.Is(err, persistence.ErrInvalidInput) {
			t.Fatalf("type %s: %v, want the check's refusal", typ, err)
		}
	}
}

package memory_test

import (
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

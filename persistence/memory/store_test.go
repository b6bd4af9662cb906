package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/persistence/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memory.New() })
}

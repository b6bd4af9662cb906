package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/bustest"
	"github.com/composable-go/composable/bus/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	bustest.Run(t, func(_ *testing.T, r bus.Retry) bustest.Bus { return memory.New(memory.WithRetry(r)) })
}

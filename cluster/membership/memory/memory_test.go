package memory_test

import (
	"testing"
	"time"

	"github.com/composable-go/composable/cluster/membership/membershiptest"
	"github.com/composable-go/composable/cluster/membership/memory"
	"github.com/composable-go/composable/testkit"
)

func TestConformance(t *testing.T) {
	membershiptest.Run(t, func(t *testing.T) membershiptest.Harness {
		clock := testkit.NewManualClock(time.Unix(0, 0))
		return membershiptest.Harness{Store: memory.New(clock), Wait: clock.Advance, TTL: time.Second}
	})
}

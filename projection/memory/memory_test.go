package memory_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/projection/memory"
	"github.com/composable-go/composable/projection/projectiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	projectiontest.Run(t, func(*testing.T) projectiontest.Harness[*memory.Tx] {
		s := memory.New()
		return projectiontest.Harness[*memory.Tx]{
			Store: s,
			Append: func(_ context.Context, tx *memory.Tx, key, value string) error {
				list, _ := tx.Get(key)
				l, _ := list.([]string)
				tx.Put(key, append(l[:len(l):len(l)], value)) // never mutate a stored value
				return nil
			},
			Read: func(_ context.Context, name, key string) ([]string, error) {
				v, _ := s.Get(name, key)
				l, _ := v.([]string)
				return l, nil
			},
		}
	})
}

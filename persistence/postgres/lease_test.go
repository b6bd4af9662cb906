package postgres

import (
	"context"
	"testing"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/storetest"
	"github.com/composable-go/composable/testkit/pgtest"
)

func TestCheckpointsAndLeases(t *testing.T) {
	pool := pgtest.Pool(t)
	storetest.RunCheckpoints(t, func(t *testing.T) persistence.CheckpointStore {
		return newStore(t, pool, pgtest.Schema(t, pool, "ckpt"))
	})
	storetest.RunLease(t, func(t *testing.T) persistence.Lease {
		return newStore(t, pool, pgtest.Schema(t, pool, "lease"))
	}, func(t *testing.T, l persistence.Lease, name string) {
		// Kill the session holding the advisory lock, as a crash would.
		key := uint64(lockKey("lease:"+name, l.(*Store).cfg.schema))
		_, err := pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1`,
			uint32(key>>32), uint32(key))
		if err != nil {
			t.Fatal(err)
		}
	})
}

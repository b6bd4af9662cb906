package postgres

import (
	"math"
	"testing"

	"github.com/composable-go/composable/testkit/pgtest"
)

// TestBinaryArraysMatchPgx: the writer's own array encoding means to
// PostgreSQL what pgx's encoding of the same slices means, edge values and
// empty arrays included.
func TestBinaryArraysMatchPgx(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := ctxFor(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const sql = "SELECT $1::text[]::text, $2::int4[]::text, $3::int8[]::text"
	texts := []string{"", "a", "ünïcødé", `{"quoted": "x,y"}`, "NULL", "tab\there"}
	int4s := []int32{0, 1, -1, 256, math.MaxInt32, math.MinInt32}
	int8s := []int64{0, 255, 256, -1, math.MaxInt64, math.MinInt64}
	for _, n := range []int{len(texts), 0} {
		ts, i4, i8 := texts[:n], int4s[:min(n, len(int4s))], int8s[:min(n, len(int8s))]
		var want [3]string
		if err := conn.QueryRow(ctx, sql, ts, i4, i8).Scan(&want[0], &want[1], &want[2]); err != nil {
			t.Fatal(err)
		}
		params := [][]byte{appendTextArray(nil, 25, ts), appendInt4Array(nil, 23, i4), appendInt8Array(nil, 20, i8)}
		res := conn.Conn().PgConn().ExecParams(ctx, sql, params, []uint32{1009, 1007, 1016}, binaryFormat, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		for i, v := range res.Rows[0] {
			if string(v) != want[i] {
				t.Errorf("%d elements, parameter %d: %s, pgx's: %s", n, i+1, v, want[i])
			}
		}
	}
}

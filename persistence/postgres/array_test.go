package postgres

import (
	"math"
	"slices"
	"testing"

	"github.com/composable-go/composable/testkit/pgtest"
)

// TestArraysRoundTrip: the insert's array parameter types encode what
// plain slices would, edge values and empty arrays included.
func TestArraysRoundTrip(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := ctxFor(t)
	texts := []string{"", "a", "ünïcødé", `{"quoted": "x,y"}`, "NULL"}
	int4s := []int32{0, 1, -1, 256, math.MaxInt32, math.MinInt32}
	int8s := []int64{0, 255, 256, -1, math.MaxInt64, math.MinInt64}
	for _, n := range []int{len(texts), 0} {
		var gotT []string
		var got4 []int32
		var got8 []int64
		if err := pool.QueryRow(ctx, "SELECT $1::text[], $2::int4[], $3::int8[]",
			textArray(texts[:n]), int4Array(int4s[:min(n, len(int4s))]), int8Array(int8s[:min(n, len(int8s))])).Scan(&gotT, &got4, &got8); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gotT, texts[:n]) || !slices.Equal(got4, int4s[:min(n, len(int4s))]) || !slices.Equal(got8, int8s[:min(n, len(int8s))]) {
			t.Fatalf("round trip of %d: %q %v %v", n, gotT, got4, got8)
		}
	}
	var isNull bool
	if err := pool.QueryRow(ctx, "SELECT $1::text[] IS NULL", textArray(nil)).Scan(&isNull); err != nil || !isNull {
		t.Fatalf("nil array: null=%v, %v", isNull, err)
	}
}

package redis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection/projectiontest"
	"github.com/composable-go/composable/testkit/redistest"
)

const (
	catchUpEvents  = 100_000
	catchUpStreams = 1_000
	catchUpBatch   = 500
)

// BenchmarkCatchUp100k measures how fast a Redis projection catches up on
// 100,000 events — each an HINCRBY of a per-stream counter — against a
// baseline of plain go-redis doing the same writes in the same MULTI/EXEC
// transactions (500 events and a checkpoint each), measured in the same
// run. The projection reports its throughput as a multiple of the
// baseline's (x-baseline).
func BenchmarkCatchUp100k(b *testing.B) {
	c := redistest.Client(b)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	feed := evmemory.New()
	for i := range catchUpEvents {
		_, err := feed.Append(ctx, "order-"+strconv.Itoa(i%catchUpStreams), persistence.Any, persistence.EventData{
			ID: "e" + strconv.Itoa(i+1), Type: "order.touched", Data: []byte("{}"),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	events, err := feed.ReadAll(ctx, 0, catchUpEvents)
	if err != nil {
		b.Fatal(err)
	}

	var baseline float64
	b.Run("raw-multi-exec", func(b *testing.B) {
		prefix := redistest.Prefix(b, c, "raw")
		for range b.N {
			b.StopTimer()
			if err := c.Del(ctx, prefix+":counts", prefix+":checkpoint").Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for i := 0; i < len(events); i += catchUpBatch {
				chunk := events[i:min(i+catchUpBatch, len(events))]
				_, err := c.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
					for _, e := range chunk {
						pipe.HIncrBy(ctx, prefix+":counts", e.StreamID, 1)
					}
					pipe.HSet(ctx, prefix+":checkpoint", "pos", chunk[len(chunk)-1].GlobalPosition)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkCatchUp(ctx, b, c.HVals(ctx, prefix+":counts").Val())
		}
		baseline = eventsPerSecond(b)
	})
	b.Run("projection", func(b *testing.B) {
		s := newStore(b, c)
		for i := range b.N {
			b.StopTimer()
			name := "catch_up_" + strconv.Itoa(i)
			projectiontest.CatchUp(ctx, b, feed, s, counting(name, nil), catchUpEvents, catchUpBatch)
			prefix, err := s.Prefix(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			checkCatchUp(ctx, b, c.HVals(ctx, prefix+"counts").Val())
			if err := s.Drop(ctx, name); err != nil {
				b.Fatal(err)
			}
		}
		if eps := eventsPerSecond(b); baseline > 0 {
			b.ReportMetric(eps/baseline, "x-baseline")
		}
	})
}

// checkCatchUp fails the benchmark unless the counters hold every event
// exactly once.
func checkCatchUp(_ context.Context, b *testing.B, counts []string) {
	b.Helper()
	var sum int
	for _, v := range counts {
		n, _ := strconv.Atoi(v)
		sum += n
	}
	if len(counts) != catchUpStreams || sum != catchUpEvents {
		b.Fatalf("model holds %d events in %d streams, want %d in %d", sum, len(counts), catchUpEvents, catchUpStreams)
	}
}

// eventsPerSecond reports and returns the throughput of the iterations so
// far.
func eventsPerSecond(b *testing.B) float64 {
	if b.Elapsed() <= 0 {
		return 0
	}
	eps := float64(catchUpEvents*b.N) / b.Elapsed().Seconds()
	b.ReportMetric(eps, "events/s")
	return eps
}

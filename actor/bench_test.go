package actor_test

import (
	"context"
	"sync"
	"testing"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
)

// The benchmarks compare the Store actor with the same reducer behind a plain
// mutex, measured in the same run, so the actor's overhead shows as a ratio:
//
//	go test -run '^$' -bench . -benchmem ./actor/
//
// BenchmarkSend measures fire-and-forget throughput: b.N Sends, then one Ask
// that returns when all of them have been reduced.

type benchState struct{ Count int }

type benchAction struct{ N int }

func benchReduce(s *benchState, a benchAction, _ struct{}) composable.Effect[benchAction] {
	s.Count += a.N
	return composable.Effect[benchAction]{}
}

func benchStore(b *testing.B) *actor.Store[benchState, benchAction, struct{}] {
	sys := actor.NewSystem(actor.WithLogger(quietLogger()))
	b.Cleanup(func() { _ = sys.Close() })
	st, err := actor.Spawn(sys, actor.Config[benchState, benchAction, struct{}]{
		Reducer: composable.ReducerFunc[benchState, benchAction, struct{}](benchReduce),
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkSend(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := st.Send(ctx, benchAction{N: 1}); err != nil {
			b.Fatal(err)
		}
	}
	s, err := st.Ask(ctx, benchAction{})
	b.StopTimer()
	if err != nil || s.Count != b.N {
		b.Fatalf("count %d, want %d (%v)", s.Count, b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
}

func BenchmarkSendParallel(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := st.Send(ctx, benchAction{N: 1}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	s, err := st.Ask(ctx, benchAction{})
	b.StopTimer()
	if err != nil || s.Count != b.N {
		b.Fatalf("count %d, want %d (%v)", s.Count, b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
}

func BenchmarkAsk(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := st.Ask(ctx, benchAction{N: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
}

// mutexStore is the baseline: the same reducer behind a mutex, with the same
// copy-on-reduce the Store does.
type mutexStore struct {
	mu    sync.Mutex
	state benchState
}

func (m *mutexStore) send(a benchAction) benchState {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.state
	_ = benchReduce(&next, a, struct{}{})
	m.state = next
	return next
}

func BenchmarkMutexBaseline(b *testing.B) {
	var m mutexStore
	b.ReportAllocs()
	for range b.N {
		m.send(benchAction{N: 1})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
}

func BenchmarkMutexBaselineParallel(b *testing.B) {
	var m mutexStore
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.send(benchAction{N: 1})
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
}

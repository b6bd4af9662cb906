package projection_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/memory"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func count(_ context.Context, tx *memory.Tx, e persistence.RecordedEvent) error {
	n, _ := tx.Get(e.StreamID)
	c, _ := n.(int)
	tx.Put(e.StreamID, c+1)
	return nil
}

func TestValidate(t *testing.T) {
	for _, name := range []string{"", "Orders", "1orders", "orders__x", "orders-x", "_orders", "orders_", "a_very_long_projection_name_over_30"} {
		p := projection.Projection[*memory.Tx]{Name: name, Handle: count}
		if err := p.Validate(); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", name, err)
		}
	}
	for _, name := range []string{"orders", "order_history", "v2_orders"} {
		p := projection.Projection[*memory.Tx]{Name: name, Handle: count}
		if err := p.Validate(); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
	err := projection.Projection[*memory.Tx]{Name: "x", OnFailure: 7}.Validate()
	if !errors.Is(err, projection.ErrInvalid) || !containsAll(err.Error(), "Handle", "OnFailure") {
		t.Fatalf("Validate = %v, want every problem", err)
	}
	if _, err := projection.NewRunner[*memory.Tx](nil, nil, projection.Projection[*memory.Tx]{}, projection.Options{}); !errors.Is(err, projection.ErrInvalid) ||
		!containsAll(err.Error(), "Lease", "feed and store", "Name") {
		t.Fatalf("NewRunner = %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

type OrderPlaced struct{ Customer string }

func TestDecoded(t *testing.T) {
	reg := persistence.NewRegistry()
	if err := persistence.Register[OrderPlaced](reg, "order.placed"); err != nil {
		t.Fatal(err)
	}
	var got []any
	h := projection.Decoded(reg, func(_ context.Context, _ *memory.Tx, e any, _ persistence.RecordedEvent) error {
		got = append(got, e)
		return nil
	})
	data, _ := reg.Marshal(OrderPlaced{Customer: "ada"})
	ctx := ctxT(t)
	if err := h(ctx, nil, persistence.RecordedEvent{EventData: data}); err != nil {
		t.Fatal(err)
	}
	// Not this projection's business: skipped.
	if err := h(ctx, nil, persistence.RecordedEvent{EventData: persistence.EventData{Type: "payment.charged", Data: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	// Corrupt: a failure, for the policy to handle.
	if err := h(ctx, nil, persistence.RecordedEvent{EventData: persistence.EventData{Type: "order.placed", SchemaVersion: 1, Data: []byte("{not json")}}); err == nil {
		t.Fatal("a corrupt event decoded")
	}
	if len(got) != 1 || got[0] != (OrderPlaced{Customer: "ada"}) {
		t.Fatalf("handled %v", got)
	}
}

// flaky fails Apply with an infrastructure error (not an *ApplyError) the
// first n times.
type flaky struct {
	*memory.Store
	n atomic.Int32
}

func (f *flaky) Apply(ctx context.Context, p projection.Projection[*memory.Tx], events []persistence.RecordedEvent) error {
	if f.n.Add(-1) >= 0 {
		return errors.New("connection reset by peer")
	}
	return f.Store.Apply(ctx, p, events)
}

// TestStoreOutageIsRetriedNotDeadLettered: a store failure is not the
// handler's, whatever the policy: nothing is skipped.
func TestStoreOutageIsRetriedNotDeadLettered(t *testing.T) {
	feed := evmemory.New()
	for i := range 10 {
		if _, err := feed.Append(ctxT(t), fmt.Sprintf("s-%d", i%2), persistence.Any, persistence.EventData{ID: fmt.Sprint(i), Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	store := &flaky{Store: memory.New()}
	store.n.Store(3)
	r, err := projection.NewRunner[*memory.Tx](feed, store, projection.Projection[*memory.Tx]{Name: "counts", Handle: count, OnFailure: projection.SkipAndDeadLetter},
		projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(), MinBackoff: time.Millisecond, BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	defer stop()
	if err := r.WaitFor(ctxT(t), 10); err != nil {
		t.Fatal(err)
	}
	a, _ := store.Get("counts", "s-0")
	b, _ := store.Get("counts", "s-1")
	if a != 5 || b != 5 {
		t.Fatalf("counts %v/%v", a, b)
	}
	if dl, _ := store.DeadLetters(ctxT(t), "counts"); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered %v", dl)
	}
}

func run(t *testing.T, r *projection.Runner[*memory.Tx]) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestLagMetricAndNoRebuild(t *testing.T) {
	feed := evmemory.New()
	for i := range 4 {
		if _, err := feed.Append(ctxT(t), "s-1", persistence.Any, persistence.EventData{ID: fmt.Sprint(i), Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	store := &noRebuild{s: memory.New()}
	r, err := projection.NewRunner[*memory.Tx](feed, store, projection.Projection[*memory.Tx]{Name: "counts", Handle: count},
		projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(), Meter: provider.Meter("test")})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Rebuild(ctxT(t)); !errors.Is(err, projection.ErrNoRebuild) {
		t.Fatalf("Rebuild = %v, want ErrNoRebuild", err)
	}
	stop := run(t, r)
	defer stop()
	if err := r.WaitFor(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	r.Pause()
	if _, err := feed.Append(ctxT(t), "s-1", persistence.Any, persistence.EventData{ID: "late", Type: "t", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctxT(t), &rm); err != nil {
		t.Fatal(err)
	}
	lag, applied := int64(-1), int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				if m.Name == "composable.projection.lag" && d.DataPoints[0].Attributes.HasValue(attribute.Key("projection")) {
					lag = d.DataPoints[0].Value
				}
			case metricdata.Sum[int64]:
				if m.Name == "composable.projection.applied" {
					applied = d.DataPoints[0].Value
				}
			}
		}
	}
	if lag != 1 || applied != 4 {
		t.Fatalf("lag %d, applied %d; want 1 and 4", lag, applied)
	}
}

// noRebuild is the memory store without its Rebuilder.
type noRebuild struct{ s *memory.Store }

func (n *noRebuild) Apply(ctx context.Context, p projection.Projection[*memory.Tx], events []persistence.RecordedEvent) error {
	return n.s.Apply(ctx, p, events)
}

func (n *noRebuild) Checkpoint(ctx context.Context, name string) (int64, error) {
	return n.s.Checkpoint(ctx, name)
}

func (n *noRebuild) DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	return n.s.DeadLetter(ctx, name, e, cause)
}

func (n *noRebuild) DeadLetters(ctx context.Context, name string) ([]projection.DeadLetter, error) {
	return n.s.DeadLetters(ctx, name)
}

// ambiguous reports the first switch-over as failed although it happened
// (a connection lost after COMMIT).
type ambiguous struct {
	*memory.Store
	reported atomic.Bool
}

func (a *ambiguous) FinishRebuild(ctx context.Context, name, building string) error {
	err := a.Store.FinishRebuild(ctx, name, building)
	if err == nil && a.reported.CompareAndSwap(false, true) {
		return errors.New("connection reset after COMMIT")
	}
	return err
}

// TestRebuildAfterAnAmbiguousSwitchOver: the runner trusts the store, not
// its memory, so it goes on after a switch-over reported as failed, and a
// later rebuild starts from position 0 again and loses nothing.
func TestRebuildAfterAnAmbiguousSwitchOver(t *testing.T) {
	ctx := ctxT(t)
	feed := evmemory.New()
	appendN := func(n int) {
		for range n {
			h, _ := feed.Head(ctx)
			if _, err := feed.Append(ctx, "s", persistence.Any, persistence.EventData{ID: fmt.Sprint("e", h+1), Type: "t", Data: []byte("{}")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := &ambiguous{Store: memory.New()}
	r, err := projection.NewRunner[*memory.Tx](feed, store, projection.Projection[*memory.Tx]{Name: "counts", Handle: count},
		projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(), PollInterval: time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	defer stop()
	rebuilt := func() {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, func() bool {
			_, going, err := store.Rebuilding(ctx, "counts")
			return err == nil && !going
		})
	}
	want := func(n int) {
		t.Helper()
		if err := r.WaitFor(ctx, int64(n)); err != nil {
			t.Fatal(err)
		}
		if got, _ := store.Get("counts", "s"); got != n {
			t.Fatalf("model counts %v events, want %d", got, n)
		}
	}
	appendN(10)
	want(10)
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	rebuilt()
	if !store.reported.Load() {
		t.Fatal("the switch-over was not reported as failed")
	}
	appendN(5)
	want(15)
	if err := r.Rebuild(ctx); err != nil { // an operator rebuilds again
		t.Fatal(err)
	}
	rebuilt()
	appendN(2)
	want(17)
}

// outage fails ApplyEvent with a store error the first n times.
type outage struct {
	*memory.Store
	n atomic.Int32
}

func (o *outage) ApplyEvent(ctx context.Context, p projection.Projection[*memory.Tx], e persistence.RecordedEvent) error {
	if o.n.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return o.Store.ApplyEvent(ctx, p, e)
}

// TestBusHandlerRetriesStoreOutages: a store failure is never handed to
// the bus (whose retries would end in its dead-letter topic) nor
// dead-lettered by the policy: the handler waits it out.
func TestBusHandlerRetriesStoreOutages(t *testing.T) {
	store := &outage{Store: memory.New()}
	store.n.Store(4)
	h, err := projection.BusHandler[*memory.Tx](store, projection.Projection[*memory.Tx]{Name: "counts", Handle: count, OnFailure: projection.SkipAndDeadLetter},
		projection.BusOptions{Logger: quiet(), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := persistence.RecordedEvent{EventData: persistence.EventData{ID: "e1", Type: "t"}, StreamID: "s", Version: 1, GlobalPosition: 1}
	if err := h(ctxT(t), bus.Delivery{Message: bus.Message{Event: e}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := store.StreamVersion(ctxT(t), "counts", "s"); v != 1 {
		t.Fatalf("stream at version %d after the outage", v)
	}
	if dl, _ := store.DeadLetters(ctxT(t), "counts"); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered %v", dl)
	}
	// A handler that ends with its ctx returns ctx's error (the bus
	// redelivers), and writes nothing.
	store.n.Store(1 << 20)
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	e2 := e
	e2.ID, e2.Version, e2.GlobalPosition = "e2", 2, 2
	if err := h(ctx, bus.Delivery{Message: bus.Message{Event: e2}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler with ctx ended = %v", err)
	}
}

// TestPanickingHandlersFollowThePolicy: a panic is the handler's failure,
// on the feed and on the bus.
func TestPanickingHandlersFollowThePolicy(t *testing.T) {
	feed := evmemory.New()
	for i := range 4 {
		if _, err := feed.Append(ctxT(t), "s", persistence.Any, persistence.EventData{ID: fmt.Sprint("e", i+1), Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	events, _ := feed.ReadAll(ctxT(t), 0, 10)
	p := projection.Projection[*memory.Tx]{Name: "panicky", OnFailure: projection.SkipAndDeadLetter,
		Handle: func(ctx context.Context, tx *memory.Tx, e persistence.RecordedEvent) error {
			if e.ID == "e2" {
				panic("nil map somewhere")
			}
			return count(ctx, tx, e)
		}}
	store := memory.New()
	r, err := projection.NewRunner[*memory.Tx](feed, store, p, projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(), PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	if err := r.WaitFor(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	stop()
	dl, _ := store.DeadLetters(ctxT(t), "panicky")
	var perr *composable.PanicError
	if n, _ := store.Get("panicky", "s"); n != 3 || len(dl) != 1 || dl[0].Event.ID != "e2" || !strings.Contains(dl[0].Error, "nil map somewhere") {
		t.Fatalf("count %v, dead letters %+v", n, dl)
	}

	bstore := memory.New()
	h, err := projection.BusHandler[*memory.Tx](bstore, p, projection.BusOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := h(ctxT(t), bus.Delivery{Message: bus.Message{Event: e}}); err != nil {
			t.Fatal(err)
		}
	}
	dl, _ = bstore.DeadLetters(ctxT(t), "panicky")
	if v, _ := bstore.StreamVersion(ctxT(t), "panicky", "s"); v != 4 || len(dl) != 1 || dl[0].Event.ID != "e2" {
		t.Fatalf("bus-fed: version %d, dead letters %+v", v, dl)
	}
	p.OnFailure = projection.Stop
	h, _ = projection.BusHandler[*memory.Tx](memory.New(), p, projection.BusOptions{Logger: quiet()})
	_ = h(ctxT(t), bus.Delivery{Message: bus.Message{Event: events[0]}})
	err = h(ctxT(t), bus.Delivery{Message: bus.Message{Event: events[1]}})
	if !errors.As(err, &perr) || !errors.Is(err, projection.ErrStopped) {
		t.Fatalf("bus-fed under Stop: %v, want the panic as ErrStopped", err)
	}
}

// blinking fails Rebuilding now and then.
type blinking struct {
	*memory.Store
	n atomic.Int32
}

func (b *blinking) Rebuilding(ctx context.Context, name string) (string, bool, error) {
	if b.n.Add(1)%2 == 1 {
		return "", false, errors.New("connection reset")
	}
	return b.Store.Rebuilding(ctx, name)
}

// TestRebuildChecksSurviveStoreErrors: the runner's look for a rebuild
// failing does not stop it, and a rebuild still completes.
func TestRebuildChecksSurviveStoreErrors(t *testing.T) {
	feed := evmemory.New()
	for i := range 6 {
		if _, err := feed.Append(ctxT(t), "s", persistence.Any, persistence.EventData{ID: fmt.Sprint("e", i+1), Type: "t", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	store := &blinking{Store: memory.New()}
	r, err := projection.NewRunner[*memory.Tx](feed, store, projection.Projection[*memory.Tx]{Name: "counts", Handle: count},
		projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(), PollInterval: time.Millisecond, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r) // fails the test if Run returns an error
	defer stop()
	if err := r.WaitFor(ctxT(t), 6); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebuild(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, going, err := store.Store.Rebuilding(ctxT(t), "counts")
		return err == nil && !going
	})
	if n, _ := store.Get("counts", "s"); n != 6 {
		t.Fatalf("rebuilt model counts %v, want 6", n)
	}
}

// TestBusHandlerMetrics: a bus-fed projection counts what it applies and
// its handler's failures, by policy.
func TestBusHandlerMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	p := projection.Projection[*memory.Tx]{Name: "counted", OnFailure: projection.SkipAndDeadLetter,
		Handle: func(ctx context.Context, tx *memory.Tx, e persistence.RecordedEvent) error {
			if e.Version == 2 {
				return errors.New("bad")
			}
			return count(ctx, tx, e)
		}}
	h, err := projection.BusHandler[*memory.Tx](memory.New(), p, projection.BusOptions{Logger: quiet(), Meter: provider.Meter("test")})
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v <= 3; v++ {
		e := persistence.RecordedEvent{EventData: persistence.EventData{ID: fmt.Sprint("e", v), Type: "t"}, StreamID: "s", Version: v, GlobalPosition: v}
		if err := h(ctxT(t), bus.Delivery{Message: bus.Message{Event: e}}); err != nil {
			t.Fatal(err)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctxT(t), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range d.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	if got["composable.projection.applied"] != 2 || got["composable.projection.failures"] != 1 {
		t.Fatalf("metrics %v; want 2 applied, 1 failure", got)
	}
}

// TestPoisonEventsAreSkippedEvenUnderRetry: under the default Retry
// policy, an event no retry can cure — its data does not decode, or the
// handler says so with bus.Permanent — is dead-lettered and passed over,
// from the feed and from the bus; an ordinary handler failure is still
// retried.
func TestPoisonEventsAreSkippedEvenUnderRetry(t *testing.T) {
	reg := persistence.NewRegistry()
	if err := persistence.Register[OrderPlaced](reg, "order.placed"); err != nil {
		t.Fatal(err)
	}
	feed := evmemory.New()
	for i, data := range []string{`{"Customer": "ada"}`, `{"Customer": `, `{"Customer": "bob"}`, `{"Customer": "cy"}`} {
		if _, err := feed.Append(ctxT(t), "s", persistence.Any, persistence.EventData{ID: fmt.Sprint("e", i+1), Type: "order.placed", SchemaVersion: 1, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	events, _ := feed.ReadAll(ctxT(t), 0, 10)
	var fails atomic.Int32
	p := projection.Projection[*memory.Tx]{Name: "orders", // OnFailure: Retry, the default
		Handle: projection.Decoded(reg, func(ctx context.Context, tx *memory.Tx, _ any, e persistence.RecordedEvent) error {
			if e.ID == "e3" && fails.Add(1) < 3 {
				return errors.New("flaky downstream") // retried until it passes
			}
			if e.ID == "e4" {
				return bus.Permanent(errors.New("negative quantity")) // the handler says: never
			}
			return count(ctx, tx, e)
		})}
	store := memory.New()
	r, err := projection.NewRunner[*memory.Tx](feed, store, p, projection.Options{Lease: evmemory.NewLeases(), Logger: quiet(),
		PollInterval: time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	if err := r.WaitFor(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	stop()
	dl, _ := store.DeadLetters(ctxT(t), "orders")
	if n, _ := store.Get("orders", "s"); n != 2 || len(dl) != 2 || dl[0].Event.ID != "e2" || dl[1].Event.ID != "e4" || fails.Load() < 3 {
		t.Fatalf("count %v, dead letters %+v, e3 tried %d times", n, dl, fails.Load())
	}

	bstore := memory.New()
	h, err := projection.BusHandler[*memory.Tx](bstore, p, projection.BusOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	fails.Store(3)
	for _, e := range events {
		if err := h(ctxT(t), bus.Delivery{Message: bus.Message{Event: e}}); err != nil {
			t.Fatal(err)
		}
	}
	if dl, _ := bstore.DeadLetters(ctxT(t), "orders"); len(dl) != 2 || dl[0].Event.ID != "e2" || dl[1].Event.ID != "e4" {
		t.Fatalf("bus-fed: dead letters %+v", dl)
	}
}

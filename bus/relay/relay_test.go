package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/bus"
	busmemory "github.com/composable-go/composable/bus/memory"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/kafkatest"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChildSchema) != "" {
		runChild() // the relay process TestRelaySurvivesKill9 kills
	}
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// testSarama is the sarama configuration for tests: quick rebalances.
func testSarama() *sarama.Config { return kafkatest.SaramaConfig() }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// seed appends n events to each of streams, interleaved.
func seed(t *testing.T, store persistence.EventStore, streams []string, n int) {
	t.Helper()
	for v := range n {
		for _, s := range streams {
			_, err := store.Append(context.Background(), s, persistence.ExpectedVersion(v),
				persistence.EventData{ID: fmt.Sprintf("%s-%d", s, v+1), Type: "t", Data: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// recorder is a publisher that records what it was asked to publish and
// can fail or block on demand.
type recorder struct {
	mu       sync.Mutex
	msgs     []bus.Message
	failNext int           // calls left that fail
	block    chan struct{} // when set, calls wait on it
	entered  chan struct{}
}

func (r *recorder) Publish(ctx context.Context, msgs ...bus.Message) error {
	r.mu.Lock()
	block, entered := r.block, r.entered
	if r.failNext > 0 {
		r.failNext--
		r.mu.Unlock()
		return errors.New("broker unavailable")
	}
	r.mu.Unlock()
	if block != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func (r *recorder) published() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// checkComplete asserts every event of the store was published at least
// once, and that each stream's first deliveries come in version order.
func checkComplete(t *testing.T, store *memory.Store, msgs []bus.Message) {
	t.Helper()
	next := map[string]int64{}
	seen := map[string]bool{}
	dups := 0
	for _, m := range msgs {
		if seen[m.Event.ID] {
			dups++
			continue
		}
		seen[m.Event.ID] = true
		if m.Event.Version != next[m.Key]+1 {
			t.Fatalf("stream %s: version %d published after %d", m.Key, m.Event.Version, next[m.Key])
		}
		next[m.Key] = m.Event.Version
		if m.Key != m.Event.StreamID || !strings.HasPrefix(m.Topic, "events.") {
			t.Fatalf("message %+v", m)
		}
	}
	if all := store.Events(); len(seen) != len(all) {
		t.Fatalf("published %d distinct events of %d", len(seen), len(all))
	}
	t.Logf("%d events, %d duplicates", len(seen), dups)
}

func start(t *testing.T, cfg relay.Config) (*relay.Relay, func()) {
	t.Helper()
	cfg.Logger = quiet()
	cfg.PollInterval = time.Millisecond
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

func TestRelayPublishesEverythingInStreamOrder(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1", "order/2", "account/7"}, 50)
	b := busmemory.New()
	r, _ := start(t, relay.Config{Store: store, Publisher: b, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), BatchSize: 7})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 150 })
	got := append(b.Messages("events.order"), b.Messages("events.account")...)
	if len(got) != 150 {
		t.Fatalf("%d messages on the bus", len(got))
	}
	// Then it follows live appends.
	seed2 := func() {
		_, err := store.Append(context.Background(), "order/1", 50, persistence.EventData{ID: "late", Type: "t"})
		if err != nil {
			t.Fatal(err)
		}
	}
	seed2()
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 151 })
}

// TestIncludeFilters publishes only the chosen events; the checkpoint moves
// past the others, even a batch with none to publish.
func TestIncludeFilters(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1", "internal/1"}, 10)
	seed(t, store, []string{"internal/2"}, 10) // whole batches passed over
	checkpoints := memory.NewCheckpoints()
	pub := &recorder{}
	include := func(e persistence.RecordedEvent) bool { return !strings.HasPrefix(e.StreamID, "internal/") }
	r, stop := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: checkpoints, Lease: memory.NewLeases(), BatchSize: 4, Include: include})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 30 })
	stop()
	msgs := pub.published()
	if len(msgs) != 10 {
		t.Fatalf("published %d messages, want the 10 of order/1", len(msgs))
	}
	for i, m := range msgs {
		if m.Key != "order/1" || m.Event.Version != int64(i+1) {
			t.Fatalf("message %d: %s v%d", i, m.Key, m.Event.Version)
		}
	}
	if pos, err := checkpoints.LoadCheckpoint(context.Background(), "relay"); err != nil || pos != 30 {
		t.Fatalf("checkpoint %d, %v; want 30", pos, err)
	}
}

func TestBrokerDownThenBack(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1", "order/2"}, 30)
	pub := &recorder{failNext: 5}
	r, _ := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), BatchSize: 10})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 60 })
	checkComplete(t, store, pub.published())
}

// TestCrashBetweenPublishAndCheckpoint stops the relay while a publish is in
// flight — after the events were committed, before the bus acknowledged —
// and restarts it: every event is published at least once, in order.
func TestCrashBetweenPublishAndCheckpoint(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1", "order/2", "order/3"}, 40)
	checkpoints, leases := memory.NewCheckpoints(), memory.NewLeases()
	pub := &recorder{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	_, stop := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: checkpoints, Lease: leases, BatchSize: 16})
	<-pub.entered // a batch is in flight
	stop()        // the crash
	pub.mu.Lock()
	pub.block = nil
	pub.mu.Unlock()
	r, _ := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: checkpoints, Lease: leases, BatchSize: 16})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 120 })
	checkComplete(t, store, pub.published())
}

// TestOneActiveRelayAndTakeover runs two relays on one lease: only one
// publishes; when it loses the lease the other carries on from the
// checkpoint.
func TestOneActiveRelayAndTakeover(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1"}, 20)
	checkpoints, leases := memory.NewCheckpoints(), memory.NewLeases()
	pubA, pubB := &recorder{}, &recorder{}
	a, _ := start(t, relay.Config{Store: store, Publisher: pubA, Checkpoints: checkpoints, Lease: leases})
	testkit.Eventually(t, 10*time.Second, func() bool { return a.Published() == 20 })
	b, _ := start(t, relay.Config{Store: store, Publisher: pubB, Checkpoints: checkpoints, Lease: leases})
	seed(t, store, []string{"order/2"}, 5)
	testkit.Eventually(t, 10*time.Second, func() bool { return a.Published() == 25 })
	if n := len(pubB.published()); n != 0 {
		t.Fatalf("the standby relay published %d events", n)
	}
	leases.Revoke("relay") // relay A's connection dies
	seed(t, store, []string{"order/3"}, 5)
	testkit.Eventually(t, 10*time.Second, func() bool { return b.Published() == 30 || a.Published() == 30 })
	all := append(pubA.published(), pubB.published()...)
	checkComplete(t, store, all)
}

func TestConfigIsValidated(t *testing.T) {
	_, err := relay.New(relay.Config{BatchSize: -1})
	if !errors.Is(err, relay.ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"Store", "Publisher", "Checkpoints", "Lease", "BatchSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if got := relay.TopicByType("t.")(persistence.RecordedEvent{StreamID: "order/42"}); got != "t.order" {
		t.Fatalf("topic %q", got)
	}
}

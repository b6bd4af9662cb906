package relay_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/kafka"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/kafkatest"
	"github.com/composable-go/composable/testkit/pgtest"
)

// The child process of TestRelaySurvivesKill9 runs a relay until it is
// killed. TestMain starts it when these variables are set.
const (
	envChildSchema  = "COMPOSABLE_RELAY_CHILD_SCHEMA"
	envChildBrokers = "COMPOSABLE_RELAY_CHILD_BROKERS"
)

func runChild() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	store, err := postgres.New(ctx, pool, postgres.WithSchema(os.Getenv(envChildSchema)), postgres.WithLogger(quiet()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	b, err := kafka.New(ctx, kafka.Config{Brokers: strings.Split(os.Getenv(envChildBrokers), ","), Sarama: testSarama()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	r, err := relay.New(relay.Config{Store: store, Publisher: b, Checkpoints: store, Lease: store, BatchSize: 10, PollInterval: 5 * time.Millisecond, Logger: quiet()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	_ = r.Run(ctx) // until SIGKILL
	os.Exit(3)
}

func pgKafka(t *testing.T) (*postgres.Store, string, *kafkatest.Broker, *kafka.Bus) {
	t.Helper()
	return pgKafkaB(t)
}

func pgKafkaB(t testing.TB) (*postgres.Store, string, *kafkatest.Broker, *kafka.Bus) {
	t.Helper()
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "relay")
	store, err := postgres.New(context.Background(), pool, postgres.WithSchema(schema), postgres.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	broker := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := kafka.New(ctx, kafka.Config{Brokers: broker.Addrs(), Partitions: 4, Sarama: testSarama(), CommitInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.CreateTopics(ctx, "events.order", "events.account"); err != nil {
		t.Fatal(err)
	}
	return store, schema, broker, b
}

// consumeAll reads topics with a fresh group until every event of store is
// there, and checks each stream arrived complete and in order.
func consumeAll(t *testing.T, store persistence.EventStore, b *kafka.Bus, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var all []persistence.RecordedEvent
	for after := int64(0); ; {
		page, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].GlobalPosition
	}
	var mu sync.Mutex
	var got []bus.Message
	distinct := map[string]bool{}
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(subCtx, fmt.Sprint("verify-", time.Now().UnixNano()), topics, func(_ context.Context, d bus.Delivery) error {
			mu.Lock()
			got = append(got, d.Message)
			distinct[d.Event.ID] = true
			mu.Unlock()
			return nil
		})
	}()
	testkit.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(distinct) == len(all)
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	next := map[string]int64{}
	seen := map[string]bool{}
	for _, m := range got {
		if seen[m.Event.ID] {
			continue
		}
		seen[m.Event.ID] = true
		if m.Event.Version != next[m.Key]+1 {
			t.Fatalf("stream %s: version %d first published after %d", m.Key, m.Event.Version, next[m.Key])
		}
		next[m.Key] = m.Event.Version
	}
	t.Logf("%d events published, %d messages consumed (%d duplicates)", len(all), len(got), len(got)-len(all))
}

func appendSome(t *testing.T, store persistence.EventStore, prefix string, streams []string, from, n int) {
	t.Helper()
	for v := from; v < from+n; v++ {
		for _, s := range streams {
			if _, err := store.Append(context.Background(), s, persistence.ExpectedVersion(v),
				persistence.EventData{ID: fmt.Sprintf("%s-%s-%d", prefix, s, v+1), Type: "t", Data: []byte("x"),
					Metadata: map[string]string{persistence.MetadataCorrelationID: "c"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRelaySurvivesKill9 kills a relay process with SIGKILL while it
// publishes — events committed, not all acknowledged — and lets another
// relay take over: every committed event reaches Kafka at least once, each
// stream in order.
func TestRelaySurvivesKill9(t *testing.T) {
	store, schema, broker, b := pgKafka(t)
	streams := []string{"order/1", "order/2", "account/3"}
	appendSome(t, store, "e", streams, 0, 100)

	child := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envChildSchema+"="+schema, envChildBrokers+"="+strings.Join(broker.Addrs(), ","))
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})
	// Kill it once it has made progress but is not done.
	testkit.Eventually(t, 30*time.Second, func() bool {
		pos, err := store.LoadCheckpoint(context.Background(), "relay")
		return err == nil && pos > 20
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed = true
	appendSome(t, store, "e", streams, 100, 20) // life goes on

	r, _ := start(t, relay.Config{Store: store, Publisher: b, Checkpoints: store, Lease: store, BatchSize: 50})
	testkit.Eventually(t, 30*time.Second, func() bool { return r.Published() == int64(3*120) })
	t.Logf("published %d", r.Published())
	consumeAll(t, store, b, "events.order", "events.account")
}

// TestRelayCancelledMidBatch stops an in-process relay while it publishes
// to Kafka and starts another.
func TestRelayCancelledMidBatch(t *testing.T) {
	store, _, _, b := pgKafka(t)
	streams := []string{"order/1", "order/2"}
	appendSome(t, store, "c", streams, 0, 200)
	r, stop := start(t, relay.Config{Store: store, Publisher: b, Checkpoints: store, Lease: store, BatchSize: 7})
	testkit.Eventually(t, 30*time.Second, func() bool { return r.Published() > 30 })
	stop()
	r2, _ := start(t, relay.Config{Store: store, Publisher: b, Checkpoints: store, Lease: store, BatchSize: 7})
	testkit.Eventually(t, 30*time.Second, func() bool { return r2.Published() == 400 })
	consumeAll(t, store, b, "events.order")
}

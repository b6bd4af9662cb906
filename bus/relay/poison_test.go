package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// rawTopic is a topic chooser of one's own that keeps the stream type as
// it is — "events.Order Service", which a broker refuses; TopicByType
// would have mapped it to a legal name.
func rawTopic(e persistence.RecordedEvent) string {
	typ, _, _ := strings.Cut(e.StreamID, "/")
	return "events." + typ
}

// picky is a publisher that refuses for good, batch and all, any message
// whose topic holds a space — as a broker refuses an illegal topic name —
// or whose data is over 100 bytes, and records the rest.
type picky struct {
	recorder
	refusals atomic.Int64
}

func (p *picky) Publish(ctx context.Context, msgs ...bus.Message) error {
	for _, m := range msgs {
		if strings.Contains(m.Topic, " ") {
			p.refusals.Add(1)
			return bus.Permanent(fmt.Errorf("%w: topic %q", bus.ErrInvalidMessage, m.Topic))
		}
		if len(m.Event.Data) > 100 {
			p.refusals.Add(1)
			return bus.Permanent(fmt.Errorf("%w: %d bytes, too large", bus.ErrInvalidMessage, len(m.Event.Data)))
		}
	}
	return p.recorder.Publish(ctx, msgs...)
}

// TestPoisonEventIsDeadLetteredAndTheFeedGoesOn: an event the bus refuses
// for good, in the middle of a batch, is dead-lettered with its
// coordinates and the reason; the events before and after it are
// published, in order, and the checkpoint moves past it.
func TestPoisonEventIsDeadLetteredAndTheFeedGoesOn(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1"}, 3)
	if _, err := store.Append(context.Background(), "Order Service/1", persistence.NoStream,
		persistence.EventData{ID: "poison", Type: "t", Data: []byte("x"), Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	seed(t, store, []string{"order/2"}, 3)
	pub := &picky{}
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	r, _ := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), BatchSize: 10,
		Meter: provider.Meter("test"), Topic: rawTopic})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 7 })
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					sums[m.Name] += p.Value
				}
			}
		}
	}
	if sums["composable.relay.dead_letters"] != 1 || sums["composable.relay.published"] != 6 {
		t.Fatalf("metrics %v, want 1 dead letter and 6 events published", sums)
	}

	var published, dead []bus.Message
	for _, m := range pub.published() {
		if m.Topic == "relay.dead-letters" {
			dead = append(dead, m)
		} else {
			published = append(published, m)
		}
	}
	if len(published) != 6 || published[2].Event.ID != "order/1-3" || published[3].Event.ID != "order/2-1" {
		t.Fatalf("published %d events around the poison: %+v", len(published), published)
	}
	if len(dead) != 1 || r.DeadLettered() != 1 {
		t.Fatalf("%d dead letters (counted %d), want 1", len(dead), r.DeadLettered())
	}
	d := dead[0].Event
	if d.ID != "poison" || d.StreamID != "Order Service/1" || d.GlobalPosition != 4 || d.Version != 1 || len(d.Data) != 0 ||
		d.Metadata[relay.MetadataDeadLetterTopic] != "events.Order Service" || !strings.Contains(d.Metadata[relay.MetadataDeadLetterError], "topic") ||
		d.Metadata["k"] != "" {
		t.Fatalf("dead letter %+v", d)
	}
}

// TestSkipMarkerTakesTheRefusedEventsPlace: an event refused for its size
// is dead-lettered, and a skip marker takes its place on its topic, in
// its stream's order — between the versions before and after it — so that
// consumers that follow the stream's versions move past it. A marker for
// a topic the bus refuses (the poison's own) is passed over.
func TestSkipMarkerTakesTheRefusedEventsPlace(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	for i, data := range []string{"{}", strings.Repeat("x", 200), "{}"} {
		if _, err := store.Append(ctx, "order/1", persistence.Any, persistence.EventData{ID: fmt.Sprint("o", i+1), Type: "order.touched", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &picky{}
	r, _ := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases()})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 3 })
	var onTopic []persistence.RecordedEvent
	for _, m := range pub.published() {
		if m.Topic == "events.order" {
			onTopic = append(onTopic, m.Event)
		}
	}
	if len(onTopic) != 3 || onTopic[0].ID != "o1" || onTopic[2].ID != "o3" {
		t.Fatalf("on the topic: %+v", onTopic)
	}
	mk := onTopic[1]
	skip, ok := bus.Skipped(mk)
	if !ok || mk.ID != "o2" || mk.StreamID != "order/1" || mk.Version != 2 || mk.GlobalPosition != 2 || len(mk.Data) > 200 ||
		skip.Type != "order.touched" || !strings.Contains(skip.Reason, "too large") {
		t.Fatalf("marker %+v (%+v, %v)", mk, skip, ok)
	}
	if r.DeadLettered() != 1 {
		t.Fatalf("dead-lettered %d, want 1", r.DeadLettered())
	}
}

// refuseAll refuses everything for good, dead letters too.
type refuseAll struct {
	mu    sync.Mutex
	calls int
}

func (p *refuseAll) Publish(context.Context, ...bus.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return bus.Permanent(errors.New("never"))
}

// TestRefusedDeadLetterIsPassedOver: when the bus refuses the dead letter
// too, the relay logs it and goes on — it never retries it forever.
func TestRefusedDeadLetterIsPassedOver(t *testing.T) {
	store := memory.New()
	seed(t, store, []string{"order/1"}, 5)
	r, _ := start(t, relay.Config{Store: store, Publisher: &refuseAll{}, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), BatchSize: 2})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 5 })
	if n := r.DeadLettered(); n != 5 {
		t.Fatalf("dead-lettered %d, want 5", n)
	}
}

// TestStopOnPoisonHoldsTheFeed: under StopOnPoison the relay keeps
// retrying the poison event, and nothing after it is published.
func TestStopOnPoisonHoldsTheFeed(t *testing.T) {
	store := memory.New()
	if _, err := store.Append(context.Background(), "Order Service/1", persistence.NoStream,
		persistence.EventData{ID: "poison", Type: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	seed(t, store, []string{"order/1"}, 2)
	pub := &picky{}
	r, stop := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(),
		OnPoison: relay.StopOnPoison, Topic: rawTopic})
	testkit.Eventually(t, 10*time.Second, func() bool { return pub.refusals.Load() >= 3 }) // retried, again and again
	stop()
	if r.Published() != 0 || len(pub.published()) != 0 || r.DeadLettered() != 0 {
		t.Fatalf("published up to %d (%d messages), dead-lettered %d: the feed moved past the poison", r.Published(), len(pub.published()), r.DeadLettered())
	}
}

// TestIllegalTopicOverKafka: on PostgreSQL and the Kafka protocol, an
// event whose stream type is no legal topic name is dead-lettered, and
// the events after it reach their topic.
func TestIllegalTopicOverKafka(t *testing.T) {
	store, _, _, b := pgKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.CreateTopics(ctx, "relay.dead-letters"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "Order Service/1", persistence.NoStream, persistence.EventData{ID: "poison", Type: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	appendSome(t, store, "after", []string{"order/1"}, 0, 3)
	r, _ := start(t, relay.Config{Store: store, Publisher: b, Checkpoints: store, Lease: memory.NewLeases(), Topic: rawTopic})
	testkit.Eventually(t, 30*time.Second, func() bool { return r.Published() == 4 })

	var mu sync.Mutex
	got := map[string][]string{} // by topic
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(subCtx, "verify-poison", []string{"events.order", "relay.dead-letters"}, func(_ context.Context, d bus.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			got[d.Topic] = append(got[d.Topic], d.Event.ID)
			return nil
		})
	}()
	testkit.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["events.order"]) >= 3 && len(got["relay.dead-letters"]) >= 1
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if dl := got["relay.dead-letters"]; dl[0] != "poison" || r.DeadLettered() != 1 {
		t.Fatalf("dead letters %v (counted %d)", dl, r.DeadLettered())
	}
}

// TestTopicByTypeMapsToLegalNames: the default topic chooser turns any
// stream type into a legal Kafka topic name.
func TestTopicByTypeMapsToLegalNames(t *testing.T) {
	topic := relay.TopicByType("events.")
	for stream, want := range map[string]string{
		"order/42":                      "events.order",
		"Order Service/1":               "events.Order_Service",
		"ventes-été/1":                  "events.ventes-_t_",
		"a.b_c-D9/x":                    "events.a.b_c-D9",
		"bad\x00type/1":                 "events.bad_type",
		strings.Repeat("t", 300) + "/1": "events." + strings.Repeat("t", 200-len("events.")),
	} {
		if got := topic(persistence.RecordedEvent{StreamID: stream}); got != want {
			t.Errorf("TopicByType(%.20q) = %q, want %q", stream, got, want)
		}
	}
}

// TestDeadLetterTopicIsLegal: a relay name that is no legal topic name
// does not make the dead letters unpublishable.
func TestDeadLetterTopicIsLegal(t *testing.T) {
	store := memory.New()
	if _, err := store.Append(context.Background(), "Order Service/1", persistence.NoStream,
		persistence.EventData{ID: "poison", Type: "t", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	pub := &picky{}
	r, _ := start(t, relay.Config{Name: "billing/outbox", Store: store, Publisher: pub, Checkpoints: memory.NewCheckpoints(), Lease: memory.NewLeases(), Topic: rawTopic})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 1 })
	if got := pub.published(); len(got) != 1 || got[0].Topic != "billing_outbox.dead-letters" {
		t.Fatalf("published %+v, want one dead letter on billing_outbox.dead-letters", got)
	}
}

// TestTopicCheckRefusesAtAppend: with a topic chooser of one's own, the
// store given TopicCheck refuses an event bound for an illegal topic at
// append — the relay never sees it — and takes the rest.
func TestTopicCheckRefusesAtAppend(t *testing.T) {
	store := memory.New(memory.WithEventCheck(persistence.Checks(nil, relay.TopicCheck(rawTopic))))
	ctx := context.Background()
	_, err := store.Append(ctx, "Order Service/1", persistence.NoStream, persistence.EventData{ID: "p", Type: "t", Data: []byte("{}")})
	if !errors.Is(err, persistence.ErrInvalidInput) || !strings.Contains(err.Error(), "events.Order Service") {
		t.Fatalf("append bound for an illegal topic = %v, want ErrInvalidInput naming the topic", err)
	}
	if _, err := store.Append(ctx, "order/1", persistence.NoStream, persistence.EventData{ID: "o", Type: "t", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if check := relay.TopicCheck(relay.TopicByType("events.")); check("Order Service/1", persistence.EventData{ID: "p", Type: "t"}) != nil {
		t.Fatal("TopicByType's topics are refused")
	}
}

// TestSkipIsCheckpointedAtOnce: the relay checkpoints a skip as soon as
// the marker is out, whatever its checkpoint interval — so a relay that
// takes over, after the cause was fixed, does not publish the event after
// its marker (consumers that took the marker would drop it).
func TestSkipIsCheckpointedAtOnce(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	for i, data := range []string{"{}", strings.Repeat("x", 200), "{}"} {
		if _, err := store.Append(ctx, "order/1", persistence.Any, persistence.EventData{ID: fmt.Sprint("o", i+1), Type: "order.touched", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &picky{}
	cps := memory.NewCheckpoints()
	r, stop := start(t, relay.Config{Store: store, Publisher: pub, Checkpoints: cps, Lease: memory.NewLeases(), CheckpointInterval: time.Hour})
	testkit.Eventually(t, 10*time.Second, func() bool { return r.Published() == 3 })
	// Read before the relay stops (and saves): as a relay killed now
	// would have left it.
	if cp, err := cps.LoadCheckpoint(ctx, "relay"); err != nil || cp < 2 {
		t.Fatalf("checkpoint %d (%v) after the skip of position 2, want at least 2", cp, err)
	}
	stop()
	// The next relay, with the cause fixed, starts past the skipped event.
	rec := &recorder{}
	r2, _ := start(t, relay.Config{Store: store, Publisher: rec, Checkpoints: cps, Lease: memory.NewLeases()})
	testkit.Eventually(t, 10*time.Second, func() bool { return r2.Published() == 3 })
	for _, m := range rec.published() {
		if m.Event.ID == "o2" {
			t.Fatalf("the skipped event was published after its marker: %+v", m.Event)
		}
	}
}

// Package bustest is the conformance suite every bus must pass.
//
// A backend's test calls [Run] with a factory that returns a bus using the
// given retry policy:
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, func(t *testing.T, r bus.Retry) bustest.Bus { return memory.New(memory.WithRetry(r)) })
//	}
//
// Every subtest uses its own topics and groups. The suite covers the
// publish/subscribe round trip, per-key order, independent consumer groups,
// a new group reading history, redelivery after a handler error, a
// subscriber closing and reopening without losing anything (5,000
// messages), ten consumers joining and leaving in waves (every message
// processed at least once, no partition handled by two consumers at once,
// keys in order; duplicates are counted and logged), a poison message going
// to the dead-letter topic with its failure recorded while the others go on
// and its key's later messages wait for it, a delivery interrupted by a stop
// being redelivered, and one group whose members subscribe to different
// topics.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Bus is what the suite exercises.
type Bus interface {
	bus.Publisher
	bus.Subscriber
}

// TopicCreator is implemented by buses whose topics must exist before use;
// the suite creates its topics through it.
type TopicCreator interface {
	CreateTopics(ctx context.Context, topics ...string) error
}

// Factory returns a bus applying retry to failing deliveries. It registers
// any cleanup with t.Cleanup.
type Factory func(t *testing.T, retry bus.Retry) Bus

// testRetry is the policy the suite asks for: three attempts, quick
// back-off.
var testRetry = bus.Retry{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}

// Run runs the whole suite.
func Run(t *testing.T, newBus Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, Bus)
	}{
		{"RoundTrip", testRoundTrip},
		{"PerKeyOrder", testPerKeyOrder},
		{"GroupsAreIndependent", testGroupsIndependent},
		{"NewGroupReadsHistory", testNewGroupReadsHistory},
		{"RedeliveryAfterHandlerError", testRedelivery},
		{"CloseAndReopenLosesNothing", testCloseReopen},
		{"ConsumersJoiningAndLeavingInWaves", testWaves},
		{"PoisonMessageIsDeadLettered", testPoison},
		{"InterruptedDeliveryIsRedelivered", testInterrupted},
		{"MembersOnDifferentTopics", testMixedTopics},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newBus(t, testRetry))
		})
	}
}

func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// topics returns fresh topic names, created on buses that need it, with
// their dead-letter topics.
func topics(t *testing.T, b Bus, n int) []string {
	t.Helper()
	var names, all []string
	for i := range n {
		name := unique(fmt.Sprintf("t%d", i))
		names = append(names, name)
		all = append(all, name, testRetry.DeadLetterTopicFor(name))
	}
	if tc, ok := b.(TopicCreator); ok {
		if err := tc.CreateTopics(ctxFor(t), all...); err != nil {
			t.Fatalf("create topics: %v", err)
		}
	}
	return names
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// msg builds the i-th message of key on topic, as a relay would.
func msg(topic, key string, version int64, position int64) bus.Message {
	return bus.Message{Topic: topic, Key: key, Event: persistence.RecordedEvent{
		EventData: persistence.EventData{
			ID: fmt.Sprintf("%s/%s/%d", topic, key, version), Type: "test.happened", SchemaVersion: 2,
			Data:     []byte(fmt.Sprintf(`{"n":%d}`, version)),
			Metadata: map[string]string{persistence.MetadataCorrelationID: "corr-" + key, "unicode": "ü ✓"},
		},
		StreamID: key, Version: version, GlobalPosition: position,
		RecordedAt: time.Date(2026, 11, 27, 10, 0, 0, int(version)*1000, time.UTC),
	}}
}

func publish(t *testing.T, b Bus, msgs ...bus.Message) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := b.Publish(ctxFor(t), msgs[:n]...); err != nil {
			t.Fatalf("publish: %v", err)
		}
		msgs = msgs[n:]
	}
}

// collector records deliveries, safe for concurrent handlers.
type collector struct {
	mu      sync.Mutex
	got     []bus.Delivery
	count   map[string]int // by event id
	more    chan struct{}
	busy    map[string]bool // topic/partition being handled now
	overlap int             // deliveries that found their partition busy
}

func newCollector() *collector {
	return &collector{count: map[string]int{}, more: make(chan struct{}, 1), busy: map[string]bool{}}
}

func (c *collector) add(d bus.Delivery) {
	c.mu.Lock()
	c.got = append(c.got, d)
	c.count[d.Event.ID]++
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

// handler records d, noting whether another delivery of its partition was
// in progress (a partition must have one consumer at a time).
func (c *collector) handler(_ context.Context, d bus.Delivery) error {
	p := fmt.Sprintf("%s/%d", d.Topic, d.Partition)
	c.mu.Lock()
	if c.busy[p] {
		c.overlap++
	}
	c.busy[p] = true
	c.mu.Unlock()
	runtime.Gosched() // widen the window an overlap needs
	c.mu.Lock()
	c.busy[p] = false
	c.mu.Unlock()
	c.add(d)
	return nil
}

// checkOrder fails if the first deliveries of a key are out of version
// order, or if a partition was handled by two consumers at once.
func (c *collector) checkOrder(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overlap > 0 {
		t.Fatalf("%d deliveries ran while another of the same partition was in progress", c.overlap)
	}
	first := map[string]bool{}
	last := map[string]int64{}
	for _, d := range c.got {
		if first[d.Event.ID] {
			continue
		}
		first[d.Event.ID] = true
		if d.Event.Version != last[d.Key]+1 {
			t.Fatalf("key %s: version %d first delivered after %d", d.Key, d.Event.Version, last[d.Key])
		}
		last[d.Key] = d.Event.Version
	}
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

func (c *collector) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.count {
		n += k - 1
	}
	return n
}

func (c *collector) deliveries() []bus.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// waitDistinct waits until n distinct events arrived.
func (c *collector) waitDistinct(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for c.distinct() < n {
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("received %d of %d distinct messages", c.distinct(), n)
		}
	}
}

// subscribe runs a subscriber until the returned stop is called.
func subscribe(t *testing.T, b Bus, group string, topics []string, h bus.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxFor(t))
	done := make(chan error, 1)
	go func() { done <- b.Subscribe(ctx, group, topics, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("subscribe: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testRoundTrip(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	sent := make([]bus.Message, 10)
	for i := range sent {
		sent[i] = msg(tps[0], "order/1", int64(i+1), int64(100+i))
	}
	publish(t, b, sent...)
	c := newCollector()
	stop := subscribe(t, b, unique("g"), tps, c.handler)
	c.waitDistinct(t, len(sent), time.Minute)
	stop()
	byID := map[string]bus.Delivery{}
	for _, d := range c.deliveries() {
		byID[d.Event.ID] = d
	}
	for _, m := range sent {
		d, ok := byID[m.Event.ID]
		if !ok {
			t.Fatalf("%s not delivered", m.Event.ID)
		}
		got, want := d.Event, m.Event
		if d.Topic != m.Topic || d.Key != m.Key || got.Type != want.Type || got.SchemaVersion != want.SchemaVersion ||
			string(got.Data) != string(want.Data) || !maps.Equal(got.Metadata, want.Metadata) || got.StreamID != want.StreamID ||
			got.Version != want.Version || got.GlobalPosition != want.GlobalPosition || !got.RecordedAt.Equal(want.RecordedAt) {
			t.Fatalf("delivered %+v\nwant %+v", d.Message, m)
		}
		if d.Attempt != 1 || d.DeadLetter != nil {
			t.Fatalf("attempt %d, dead letter %v", d.Attempt, d.DeadLetter)
		}
	}
}

func testPerKeyOrder(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	const keys, per = 5, 100
	var sent []bus.Message
	for v := range per {
		for k := range keys {
			sent = append(sent, msg(tps[0], fmt.Sprintf("k%d", k), int64(v+1), int64(len(sent)+1)))
		}
	}
	publish(t, b, sent...)
	c := newCollector()
	stop := subscribe(t, b, unique("g"), tps, c.handler)
	c.waitDistinct(t, len(sent), time.Minute)
	stop()
	last := map[string]int64{}
	for _, d := range c.deliveries() {
		if d.Event.Version <= last[d.Key] {
			t.Fatalf("key %s: version %d after %d", d.Key, d.Event.Version, last[d.Key])
		}
		last[d.Key] = d.Event.Version
	}
}

func testGroupsIndependent(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	a, z := newCollector(), newCollector()
	subscribe(t, b, unique("a"), tps, a.handler)
	subscribe(t, b, unique("z"), tps, z.handler)
	var sent []bus.Message
	for i := range 50 {
		sent = append(sent, msg(tps[0], fmt.Sprintf("k%d", i%3), int64(i/3+1), int64(i+1)))
	}
	publish(t, b, sent...)
	a.waitDistinct(t, len(sent), time.Minute)
	z.waitDistinct(t, len(sent), time.Minute)
}

func testNewGroupReadsHistory(t *testing.T, b Bus) {
	tps := topics(t, b, 2)
	var sent []bus.Message
	for i := range 40 {
		sent = append(sent, msg(tps[i%2], fmt.Sprintf("k%d", i%4), int64(i/4+1), int64(i+1)))
	}
	publish(t, b, sent...)
	first := newCollector()
	stop := subscribe(t, b, unique("early"), tps, first.handler)
	first.waitDistinct(t, len(sent), time.Minute)
	stop()
	late := newCollector() // a group created after everything was published
	subscribe(t, b, unique("late"), tps, late.handler)
	late.waitDistinct(t, len(sent), time.Minute)
}

func testRedelivery(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	var sent []bus.Message
	for i := range 20 {
		sent = append(sent, msg(tps[0], "k", int64(i+1), int64(i+1)))
	}
	c := newCollector()
	failed := map[string]bool{}
	var mu sync.Mutex
	subscribe(t, b, unique("g"), tps, func(ctx context.Context, d bus.Delivery) error {
		mu.Lock()
		first := d.Event.Version == 7 && !failed[d.Event.ID]
		failed[d.Event.ID] = true
		mu.Unlock()
		if first {
			return fmt.Errorf("transient failure")
		}
		c.add(d)
		return nil
	})
	publish(t, b, sent...)
	c.waitDistinct(t, len(sent), time.Minute)
	var seven bus.Delivery
	for _, d := range c.deliveries() {
		if d.Event.Version == 7 {
			seven = d
		}
	}
	if seven.Attempt != 2 {
		t.Fatalf("version 7 acknowledged at attempt %d, want 2", seven.Attempt)
	}
	versions := []int64{}
	for _, d := range c.deliveries() {
		versions = append(versions, d.Event.Version)
	}
	if !slices.IsSorted(versions) {
		t.Fatalf("a retry broke the key's order: %v", versions)
	}
}

func testCloseReopen(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	const total = 5000
	var sent []bus.Message
	for i := range total {
		sent = append(sent, msg(tps[0], fmt.Sprintf("k%d", i%17), int64(i/17+1), int64(i+1)))
	}
	publish(t, b, sent...)
	group := unique("g")
	c := newCollector()
	stop := subscribe(t, b, group, tps, c.handler)
	c.waitDistinct(t, total/3, time.Minute) // stop partway through
	stop()
	before := c.distinct()
	stop = subscribe(t, b, group, tps, c.handler)
	c.waitDistinct(t, total, 2*time.Minute)
	stop()
	c.checkOrder(t)
	dup := c.duplicates()
	t.Logf("close/reopen: %d messages, %d handled before the stop, %d duplicate deliveries", total, before, dup)
	if dup >= before {
		t.Fatalf("%d duplicates for %d messages handled before the stop: the reopened subscriber did not resume from its offsets", dup, before)
	}
}

func testWaves(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	const total = 3000
	group := unique("g")
	c := newCollector()
	var sent []bus.Message
	for i := range total {
		sent = append(sent, msg(tps[0], fmt.Sprintf("k%d", i%31), int64(i/31+1), int64(i+1)))
	}
	stops := make([]func(), 10)
	// Wave 1: five consumers join while the first third is published.
	for i := range 5 {
		stops[i] = subscribe(t, b, group, tps, c.handler)
	}
	publish(t, b, sent[:total/3]...)
	c.waitDistinct(t, total/6, time.Minute)
	// Wave 2: five more join, three of the first leave.
	for i := 5; i < 10; i++ {
		stops[i] = subscribe(t, b, group, tps, c.handler)
	}
	for i := range 3 {
		stops[i]()
	}
	publish(t, b, sent[total/3:2*total/3]...)
	c.waitDistinct(t, total/2, time.Minute)
	// Wave 3: all but one leave, the rest is published.
	for i := 3; i < 9; i++ {
		stops[i]()
	}
	publish(t, b, sent[2*total/3:]...)
	c.waitDistinct(t, total, 2*time.Minute)
	stops[9]()
	c.checkOrder(t)
	t.Logf("waves: %d messages, %d duplicate deliveries (at-least-once)", total, c.duplicates())
}

func testPoison(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	var sent []bus.Message
	for i := range 30 {
		sent = append(sent, msg(tps[0], fmt.Sprintf("k%d", i%3), int64(i/3+1), int64(i+1)))
	}
	poison := sent[10]
	c := newCollector()
	group := unique("g")
	var (
		mu         sync.Mutex
		seq        int
		lastPoison int                // sequence number of the poison's last attempt
		after      = map[int]string{} // sequence -> id, for the poison key's later events
		poisonPart int32
	)
	subscribe(t, b, group, tps, func(ctx context.Context, d bus.Delivery) error {
		mu.Lock()
		seq++
		n := seq
		if d.Event.ID == poison.Event.ID {
			lastPoison, poisonPart = n, d.Partition
		} else if d.Key == poison.Key && d.Event.Version > poison.Event.Version {
			after[n] = d.Event.ID
		}
		mu.Unlock()
		if d.Event.ID == poison.Event.ID {
			return fmt.Errorf("cannot handle %s", d.Event.ID)
		}
		c.add(d)
		return nil
	})
	publish(t, b, sent...)
	c.waitDistinct(t, len(sent)-1, time.Minute) // the others go on
	dl := newCollector()
	subscribe(t, b, unique("dlq-reader"), []string{testRetry.DeadLetterTopicFor(tps[0])}, dl.handler)
	dl.waitDistinct(t, 1, time.Minute)
	d := dl.deliveries()[0]
	if d.Event.ID != poison.Event.ID || d.DeadLetter == nil {
		t.Fatalf("dead letter %+v", d)
	}
	info := *d.DeadLetter
	if info.Attempts != testRetry.MaxAttempts || info.Topic != tps[0] || info.Group != group || info.Partition != poisonPart ||
		!strings.Contains(info.Error, "cannot handle") {
		t.Fatalf("dead-letter info %+v", info)
	}
	if string(d.Event.Data) != string(poison.Event.Data) || d.Key != poison.Key || d.Event.Type != poison.Event.Type ||
		!maps.Equal(d.Event.Metadata, poison.Event.Metadata) || d.Event.Version != poison.Event.Version {
		t.Fatalf("dead letter lost the original: %+v", d.Message)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(after) == 0 {
		t.Fatal("no later event of the poison's key was delivered")
	}
	for n, id := range after {
		if n < lastPoison {
			t.Fatalf("%s was delivered before the poison message was dead-lettered: its key's order broke", id)
		}
	}
}

// testInterrupted stops a subscriber while its handler is in the middle of
// a message (the handler gives up with the context): the message was not
// acknowledged, so the next subscriber gets it.
func testInterrupted(t *testing.T, b Bus) {
	tps := topics(t, b, 1)
	var sent []bus.Message
	for i := range 10 {
		sent = append(sent, msg(tps[0], "k", int64(i+1), int64(i+1)))
	}
	publish(t, b, sent...)
	group := unique("g")
	inside := make(chan struct{})
	var once sync.Once
	c := newCollector()
	stop := subscribe(t, b, group, tps, func(ctx context.Context, d bus.Delivery) error {
		if d.Event.Version == 4 {
			once.Do(func() { close(inside) })
			<-ctx.Done()
			return ctx.Err()
		}
		c.add(d)
		return nil
	})
	<-inside
	stop()
	stop = subscribe(t, b, group, tps, c.handler)
	c.waitDistinct(t, len(sent), time.Minute)
	stop()
}

// testMixedTopics has one group whose members subscribe to different
// topics: every topic's messages reach the members subscribed to it.
func testMixedTopics(t *testing.T, b Bus) {
	tps := topics(t, b, 2)
	group := unique("g")
	ca, cb := newCollector(), newCollector()
	subscribe(t, b, group, tps[:1], ca.handler)
	subscribe(t, b, group, tps[1:], cb.handler)
	var sa, sb []bus.Message
	for i := range 40 {
		sa = append(sa, msg(tps[0], fmt.Sprintf("k%d", i%5), int64(i/5+1), int64(i+1)))
		sb = append(sb, msg(tps[1], fmt.Sprintf("k%d", i%5), int64(i/5+1), int64(100+i)))
	}
	publish(t, b, append(sa, sb...)...)
	ca.waitDistinct(t, len(sa), time.Minute)
	cb.waitDistinct(t, len(sb), time.Minute)
}

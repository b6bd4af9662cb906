package kafkatest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/testkit/kafkatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-metrics ticks every sarama meter from one process-wide goroutine
		// that it starts with the first meter and never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// waitTimeout bounds every wait on an asynchronous condition.
const waitTimeout = 10 * time.Second

// newConfig is the sarama configuration these tests prove against kfake.
// Production uses the same settings against Kafka or Redpanda except for
// the ones marked "test timing".
func newConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "kafkatest"
	cfg.Version = sarama.V3_6_0_0

	// An idempotent producer: sarama's Validate insists on acks=all, one
	// request in flight per broker and at least one retry.
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Return.Successes = true // a SyncProducer needs it

	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond

	// Test timing. Group requests (heartbeats, commits) share one
	// connection per broker with fetches and wait behind a fetch's
	// long poll, so MaxWaitTime bounds how fast a member notices a
	// rebalance and how fast it commits.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second // the broker's minimum
	cfg.Consumer.Group.Rebalance.Timeout = 5 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	cfg.Net.DialTimeout = 5 * time.Second
	// sarama gives every response, a JoinGroup the broker holds for up to
	// the rebalance timeout included, the same read deadline.
	cfg.Net.ReadTimeout = 2 * cfg.Consumer.Group.Rebalance.Timeout
	cfg.Net.WriteTimeout = 5 * time.Second
	return cfg
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		case <-tick.C:
		}
	}
}

func newProducer(t *testing.T, b *kafkatest.Broker) sarama.SyncProducer {
	t.Helper()
	p, err := sarama.NewSyncProducer(b.Addrs(), newConfig())
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close producer: %v", err)
		}
	})
	return p
}

// message builds record seq of a test stream: its key, a value derived
// from seq and headers that exercise repeated keys, binary and empty
// values.
func message(topic, key string, seq int) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(key),
		Value:   sarama.StringEncoder("payload-" + strconv.Itoa(seq)),
		Headers: headersFor(seq),
	}
}

func headersFor(seq int) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("seq"), Value: []byte(strconv.Itoa(seq))},
		{Key: []byte("trace-id"), Value: []byte(fmt.Sprintf("trace-%06d", seq))},
		{Key: []byte("bin"), Value: []byte{0x00, 0xff, byte(seq)}},
		{Key: []byte("dup"), Value: []byte("first")},
		{Key: []byte("dup"), Value: []byte("second")},
		{Key: []byte("empty"), Value: []byte{}},
	}
}

func send(t *testing.T, p sarama.SyncProducer, msgs []*sarama.ProducerMessage) {
	t.Helper()
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("send %d messages: %v", len(msgs), err)
	}
}

// delivery is one message as a consumer group member saw it.
type delivery struct {
	partition int32
	offset    int64
	key       string
	seq       int
	value     []byte
	headers   []*sarama.RecordHeader
}

// recorder is a sarama.ConsumerGroupHandler that records every delivery
// and marks each one after recording it, as a handler marks a message once
// it has processed it. With markLimit > 0 it marks only the first
// markLimit deliveries; later ones count as received but not processed.
// With commitInCleanup it commits in Cleanup, which sarama calls after
// every ConsumeClaim has returned at the end of a session: at shutdown and
// at an eager rebalance, but not when a cooperative rebalance revokes some
// partitions.
type recorder struct {
	markLimit       int
	commitInCleanup bool

	mu      sync.Mutex
	got     []delivery
	marked  map[int32]int64 // partition → offset of the last marked message
	nMarked int
	claimed map[int32]bool // partitions whose ConsumeClaim is running
}

// recorded is a snapshot of what a recorder has seen.
type recorded struct {
	got     []delivery
	next    map[int32]int64 // partition → offset after the last marked message
	nMarked int
	claimed int
}

func newRecorder() *recorder {
	return &recorder{marked: make(map[int32]int64), claimed: make(map[int32]bool)}
}

func (r *recorder) Setup(sarama.ConsumerGroupSession) error { return nil }

func (r *recorder) Cleanup(sess sarama.ConsumerGroupSession) error {
	if r.commitInCleanup {
		sess.Commit()
	}
	return nil
}

func (r *recorder) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	r.setClaimed(claim.Partition(), true)
	defer r.setClaimed(claim.Partition(), false)
	for msg := range claim.Messages() {
		r.record(sess, msg)
	}
	return nil
}

func (r *recorder) setClaimed(partition int32, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claimed[partition] = on
}

func (r *recorder) record(sess sarama.ConsumerGroupSession, msg *sarama.ConsumerMessage) {
	d := delivery{partition: msg.Partition, offset: msg.Offset, key: string(msg.Key), seq: -1, value: msg.Value, headers: msg.Headers}
	for _, h := range msg.Headers {
		if n, err := strconv.Atoi(string(h.Value)); err == nil && string(h.Key) == "seq" {
			d.seq = n
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	if r.markLimit > 0 && r.nMarked >= r.markLimit {
		return
	}
	sess.MarkMessage(msg, "")
	r.marked[msg.Partition] = msg.Offset
	r.nMarked++
}

func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := recorded{got: slices.Clone(r.got), next: make(map[int32]int64, len(r.marked)), nMarked: r.nMarked}
	for p, o := range r.marked {
		s.next[p] = o + 1
	}
	for _, on := range r.claimed {
		if on {
			s.claimed++
		}
	}
	return s
}

// member is one consumer group member consuming in the background until
// stopped.
type member struct {
	group   sarama.ConsumerGroup
	cancel  context.CancelFunc
	done    chan struct{} // closed when the Consume loop has returned
	errDone chan struct{} // closed when the Errors channel is drained

	stopOnce sync.Once

	mu   sync.Mutex
	errs []error
}

// startMember joins group and consumes topics with h until stop or the
// test's cleanup.
func startMember(t *testing.T, b *kafkatest.Broker, group string, topics []string, cfg *sarama.Config, h sarama.ConsumerGroupHandler) *member {
	t.Helper()
	g, err := sarama.NewConsumerGroup(b.Addrs(), group, cfg)
	if err != nil {
		t.Fatalf("new consumer group %s: %v", group, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{group: g, cancel: cancel, done: make(chan struct{}), errDone: make(chan struct{})}
	go func() {
		defer close(m.errDone)
		for err := range g.Errors() {
			t.Logf("consumer group %s: %v", group, err)
		}
	}()
	go func() {
		defer close(m.done)
		// Consume returns at every eager rebalance; call it again until
		// stopped, as a service would.
		for ctx.Err() == nil {
			if err := g.Consume(ctx, topics, h); err != nil {
				m.mu.Lock()
				m.errs = append(m.errs, err)
				m.mu.Unlock()
				return
			}
		}
	}()
	t.Cleanup(func() { m.stop(t) })
	return m
}

// stop ends the member's session (running Cleanup and the final commit),
// leaves the group and closes the client. It fails t if Consume returned
// an error.
func (m *member) stop(t *testing.T) {
	t.Helper()
	m.stopOnce.Do(func() {
		m.cancel()
		<-m.done
		if err := m.group.Close(); err != nil {
			t.Errorf("close consumer group: %v", err)
		}
		<-m.errDone
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, err := range m.errs {
			t.Errorf("consume: %v", err)
		}
	})
}

// bySeq indexes deliveries by seq, counting duplicates.
func bySeq(ds ...[]delivery) (seen map[int]delivery, dups int) {
	seen = make(map[int]delivery)
	for _, list := range ds {
		for _, d := range list {
			if _, ok := seen[d.seq]; ok {
				dups++
				continue
			}
			seen[d.seq] = d
		}
	}
	return seen, dups
}

func TestProduceConsumeKeysAndHeaders(t *testing.T) {
	const (
		topic = "orders"
		n     = 500
		keys  = 25
	)
	b := kafkatest.Start(t, kafkatest.Topic(topic, 4))
	p := newProducer(t, b)

	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = message(topic, fmt.Sprintf("key-%02d", i%keys), i)
	}
	send(t, p, msgs)
	// The producer reports where each message landed.
	where := make(map[int][2]int64, n)
	for i, m := range msgs {
		where[i] = [2]int64{int64(m.Partition), m.Offset}
	}

	r := newRecorder()
	startMember(t, b, "readers", []string{topic}, newConfig(), r)
	waitFor(t, "all messages", func() bool { return len(r.snapshot().got) >= n })

	seen, dups := bySeq(r.snapshot().got)
	if dups != 0 {
		t.Errorf("%d duplicate deliveries in one uninterrupted session", dups)
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct messages, want %d", len(seen), n)
	}
	for seq := range n {
		d := seen[seq]
		if want := fmt.Sprintf("key-%02d", seq%keys); d.key != want {
			t.Errorf("seq %d: key %q, want %q", seq, d.key, want)
		}
		if want := "payload-" + strconv.Itoa(seq); string(d.value) != want {
			t.Errorf("seq %d: value %q, want %q", seq, d.value, want)
		}
		if got, want := [2]int64{int64(d.partition), d.offset}, where[seq]; got != want {
			t.Errorf("seq %d: consumed at partition/offset %v, produced at %v", seq, got, want)
		}
		want := headersFor(seq)
		if len(d.headers) != len(want) {
			t.Errorf("seq %d: %d headers, want %d", seq, len(d.headers), len(want))
			continue
		}
		for i, h := range d.headers {
			if !bytes.Equal(h.Key, want[i].Key) || !bytes.Equal(h.Value, want[i].Value) {
				t.Errorf("seq %d: header %d is %q=%q, want %q=%q", seq, i, h.Key, h.Value, want[i].Key, want[i].Value)
			}
		}
	}
}

func TestPerKeyOrderWithinPartition(t *testing.T) {
	const (
		topic     = "accounts"
		producers = 4
		keysEach  = 2
		perKey    = 40
	)
	b := kafkatest.Start(t, kafkatest.Topic(topic, 3))
	p := newProducer(t, b)

	// Several goroutines share the producer; each owns its keys and sends
	// their messages one at a time, interleaving keys, so only the
	// client's and broker's ordering can keep a key in order.
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for g := range producers {
		wg.Go(func() {
			for i := range perKey {
				for k := range keysEach {
					key := fmt.Sprintf("account-%d-%d", g, k)
					if _, _, err := p.SendMessage(message(topic, key, i)); err != nil {
						errs <- fmt.Errorf("send %s #%d: %w", key, i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	const total = producers * keysEach * perKey
	r := newRecorder()
	startMember(t, b, "ledger", []string{topic}, newConfig(), r)
	waitFor(t, "all messages", func() bool { return len(r.snapshot().got) >= total })

	type keyState struct {
		partition  int32
		lastOffset int64
		next       int
	}
	state := make(map[string]*keyState)
	for _, d := range r.snapshot().got {
		s, ok := state[d.key]
		if !ok {
			s = &keyState{partition: d.partition, lastOffset: -1}
			state[d.key] = s
		}
		if d.partition != s.partition {
			t.Errorf("key %s: seq %d on partition %d, earlier ones on %d", d.key, d.seq, d.partition, s.partition)
		}
		if d.seq != s.next || d.offset <= s.lastOffset {
			t.Errorf("key %s: got seq %d at offset %d, want seq %d after offset %d", d.key, d.seq, d.offset, s.next, s.lastOffset)
		}
		s.next = d.seq + 1
		s.lastOffset = d.offset
	}
	if len(state) != producers*keysEach {
		t.Errorf("saw %d keys, want %d", len(state), producers*keysEach)
	}
	for key, s := range state {
		if s.next != perKey {
			t.Errorf("key %s: ended at seq %d, want %d", key, s.next-1, perKey-1)
		}
	}
}

// TestResumeFromMarkedOffsets stops a member part-way, after it marked only
// some of what it received, and checks that the next member of the group
// starts exactly after the last marked message of each partition: nothing
// lost, nothing redelivered. Offsets reach the broker either through the
// offset manager's auto-commit interval or, with auto-commit off, through
// the Commit the handler makes in Cleanup.
func TestResumeFromMarkedOffsets(t *testing.T) {
	const (
		topic = "payments"
		group = "settlement"
		total = 150
		limit = 90 // the first member processes (marks) this many
	)
	cases := []struct {
		name       string
		autoCommit bool
	}{
		{name: "auto-commit interval", autoCommit: true},
		{name: "commit in Cleanup", autoCommit: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Three brokers: partition leaders and the group coordinator
			// are spread over them, so fetches, produce requests and
			// commits travel over different connections, as in production.
			b := kafkatest.Start(t, kafkatest.Topic(topic, 3), kafkatest.Brokers(3))
			p := newProducer(t, b)
			msgs := make([]*sarama.ProducerMessage, total)
			for i := range msgs {
				msgs[i] = message(topic, fmt.Sprintf("payer-%d", i%17), i)
			}
			send(t, p, msgs)

			cfg := newConfig()
			cfg.Consumer.Offsets.AutoCommit.Enable = tc.autoCommit

			first := newRecorder()
			first.markLimit = limit
			first.commitInCleanup = !tc.autoCommit
			m1 := startMember(t, b, group, []string{topic}, cfg, first)
			waitFor(t, "the first member to mark its share", func() bool { return first.snapshot().nMarked >= limit })
			want := first.snapshot().next

			if tc.autoCommit {
				// The interval alone commits, before any close.
				waitFor(t, "auto-commit of the marked offsets", func() bool {
					return maps.Equal(b.Committed(t, group, topic), want)
				})
			} else if got := b.Committed(t, group, topic); len(got) != 0 {
				t.Fatalf("committed %v before Cleanup with auto-commit off", got)
			}
			m1.stop(t)
			if got := b.Committed(t, group, topic); !maps.Equal(got, want) {
				t.Fatalf("committed after close: %v, want %v (the offsets after the last marked messages)", got, want)
			}

			second := newRecorder()
			startMember(t, b, group, []string{topic}, cfg, second)
			firstMarked := make(map[int]bool)
			for _, d := range first.snapshot().got {
				if d.offset < want[d.partition] {
					firstMarked[d.seq] = true
				}
			}
			waitFor(t, "the second member to read the rest", func() bool {
				seen, _ := bySeq(second.snapshot().got)
				for seq := range firstMarked {
					seen[seq] = delivery{}
				}
				return len(seen) >= total
			})

			// The second member starts each partition exactly at the
			// committed offset (or the beginning, where nothing was
			// committed).
			start := make(map[int32]int64)
			for _, d := range second.snapshot().got {
				if _, ok := start[d.partition]; !ok {
					start[d.partition] = d.offset
				}
			}
			for part, off := range start {
				if off != want[part] {
					t.Errorf("partition %d: second member started at offset %d, want %d", part, off, want[part])
				}
			}

			dups := 0
			seen := make(map[int]bool, total)
			for seq := range firstMarked {
				seen[seq] = true
			}
			for _, d := range second.snapshot().got {
				if seen[d.seq] {
					dups++
				}
				seen[d.seq] = true
			}
			t.Logf("first member marked %d of %d received; second member received %d; duplicates %d",
				len(firstMarked), len(first.snapshot().got), len(second.snapshot().got), dups)
			if dups != 0 {
				t.Errorf("%d messages redelivered after an orderly hand-over", dups)
			}
			for seq := range total {
				if !seen[seq] {
					t.Errorf("seq %d lost", seq)
				}
			}
		})
	}
}

// TestRebalanceLosesNothing lets a second member join while messages are
// produced and consumed, and checks that every message is processed.
func TestRebalanceLosesNothing(t *testing.T) {
	const (
		topic = "shipments"
		group = "dispatch"
		phase = 200
	)
	cases := []struct {
		name     string
		strategy sarama.BalanceStrategy
	}{
		{name: "eager range", strategy: sarama.NewBalanceStrategyRange()},
		{name: "cooperative sticky", strategy: sarama.NewBalanceStrategyCooperativeSticky()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := kafkatest.Start(t, kafkatest.Topic(topic, 6))
			p := newProducer(t, b)
			cfg := newConfig()
			cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{tc.strategy}

			seq := 0
			batch := func(n int) []*sarama.ProducerMessage {
				msgs := make([]*sarama.ProducerMessage, n)
				for i := range msgs {
					msgs[i] = message(topic, fmt.Sprintf("parcel-%d", seq%60), seq)
					seq++
				}
				return msgs
			}

			a := newRecorder()
			startMember(t, b, group, []string{topic}, cfg, a)
			send(t, p, batch(phase))
			waitFor(t, "the first member to consume", func() bool { return len(a.snapshot().got) > 0 })

			// Produce while the second member joins and partitions move.
			during := batch(phase)
			produced := make(chan error, 1)
			go func() {
				var err error
				for chunk := range slices.Chunk(during, 10) {
					if err = p.SendMessages(chunk); err != nil {
						break
					}
				}
				produced <- err
			}()
			c := newRecorder()
			startMember(t, b, group, []string{topic}, cfg, c)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := b.WaitGroupStable(ctx, group, 2); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-produced:
				if err != nil {
					t.Fatalf("produce during rebalance: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("timed out producing during the rebalance")
			}
			waitFor(t, "both members to hold partitions", func() bool {
				ca, cc := a.snapshot().claimed, c.snapshot().claimed
				return ca > 0 && cc > 0 && ca+cc == 6
			})
			send(t, p, batch(phase))

			total := seq
			waitFor(t, "every message", func() bool {
				seen, _ := bySeq(a.snapshot().got, c.snapshot().got)
				return len(seen) == total
			})
			gotA, gotC := a.snapshot().got, c.snapshot().got
			_, dups := bySeq(gotA, gotC)
			t.Logf("first member %d, second member %d, duplicates %d of %d", len(gotA), len(gotC), dups, total)
			if len(gotC) == 0 {
				t.Error("the second member consumed nothing")
			}
		})
	}
}

// deadLetterer fails messages carrying a "poison" header and produces them
// to a dead-letter topic with the original key, value and headers plus
// headers saying where they came from and why they failed, then marks
// them so the partition moves on.
type deadLetterer struct {
	dlq      sarama.SyncProducer
	dlqTopic string

	mu     sync.Mutex
	passed int
	errs   []error
}

func (*deadLetterer) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*deadLetterer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *deadLetterer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		if err := h.handle(msg); err != nil {
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
			return err // not marked: the next owner retries it
		}
		sess.MarkMessage(msg, "")
	}
	return nil
}

func (h *deadLetterer) handle(msg *sarama.ConsumerMessage) error {
	poisoned := slices.ContainsFunc(msg.Headers, func(rh *sarama.RecordHeader) bool { return string(rh.Key) == "poison" })
	if !poisoned {
		h.mu.Lock()
		h.passed++
		h.mu.Unlock()
		return nil
	}
	headers := make([]sarama.RecordHeader, 0, len(msg.Headers)+4)
	for _, rh := range msg.Headers {
		headers = append(headers, *rh)
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte("dlq-original-topic"), Value: []byte(msg.Topic)},
		sarama.RecordHeader{Key: []byte("dlq-original-partition"), Value: []byte(strconv.Itoa(int(msg.Partition)))},
		sarama.RecordHeader{Key: []byte("dlq-original-offset"), Value: []byte(strconv.FormatInt(msg.Offset, 10))},
		sarama.RecordHeader{Key: []byte("dlq-error"), Value: []byte("poison message")},
	)
	_, _, err := h.dlq.SendMessage(&sarama.ProducerMessage{
		Topic:     h.dlqTopic,
		Key:       sarama.ByteEncoder(msg.Key),
		Value:     sarama.ByteEncoder(msg.Value),
		Headers:   headers,
		Timestamp: msg.Timestamp,
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	return nil
}

func TestDeadLetterWithHeaders(t *testing.T) {
	const (
		topic = "invoices"
		dlq   = "invoices.dlq"
		n     = 40
	)
	b := kafkatest.Start(t, kafkatest.Topic(topic, 2))
	b.CreateTopic(t, dlq, 1) // created after start, as an operator would
	p := newProducer(t, b)
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = message(topic, fmt.Sprintf("customer-%d", i%4), i)
		if i%5 == 0 {
			msgs[i].Headers = append(msgs[i].Headers, sarama.RecordHeader{Key: []byte("poison"), Value: []byte("yes")})
		}
	}
	send(t, p, msgs)

	h := &deadLetterer{dlq: p, dlqTopic: dlq}
	startMember(t, b, "billing", []string{topic}, newConfig(), h)
	dead := newRecorder()
	startMember(t, b, "billing-dlq", []string{dlq}, newConfig(), dead)
	waitFor(t, "the dead letters", func() bool { return len(dead.snapshot().got) >= n/5 })
	waitFor(t, "the good messages", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.passed >= n-n/5 || len(h.errs) > 0
	})
	h.mu.Lock()
	for _, err := range h.errs {
		t.Error(err)
	}
	h.mu.Unlock()

	for _, d := range dead.snapshot().got {
		if d.seq%5 != 0 {
			t.Errorf("seq %d dead-lettered, but it was not poisoned", d.seq)
		}
		got := make(map[string]string)
		for _, rh := range d.headers {
			got[string(rh.Key)] = string(rh.Value)
		}
		if got["dlq-original-topic"] != topic || got["dlq-error"] == "" || got["trace-id"] != fmt.Sprintf("trace-%06d", d.seq) {
			t.Errorf("seq %d: dead letter headers %v", d.seq, got)
		}
		src := msgs[d.seq]
		if got["dlq-original-partition"] != strconv.Itoa(int(src.Partition)) || got["dlq-original-offset"] != strconv.FormatInt(src.Offset, 10) {
			t.Errorf("seq %d: dead letter points at %s@%s, produced at %d@%d", d.seq,
				got["dlq-original-partition"], got["dlq-original-offset"], src.Partition, src.Offset)
		}
		if d.key != fmt.Sprintf("customer-%d", d.seq%4) {
			t.Errorf("seq %d: dead letter key %q", d.seq, d.key)
		}
	}
}

func TestStartOptions(t *testing.T) {
	b := kafkatest.Start(t, kafkatest.Brokers(3), kafkatest.Topic("a", 2), kafkatest.Topic("b", 0))
	addrs := b.Addrs()
	if len(addrs) != 3 || len(slices.Compact(slices.Sorted(slices.Values(addrs)))) != 3 {
		t.Fatalf("Addrs() = %v, want three distinct addresses", addrs)
	}
	addrs[0] = "mutated"
	if b.Addrs()[0] == "mutated" {
		t.Error("Addrs returned its own slice")
	}
	b.CreateTopic(t, "c", 5)

	admin, err := sarama.NewClusterAdmin(b.Addrs(), newConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := admin.Close(); err != nil {
			t.Errorf("close admin: %v", err)
		}
	}()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int32{"a": 2, "b": 10, "c": 5} {
		if got := topics[name].NumPartitions; got != want {
			t.Errorf("topic %s has %d partitions, want %d", name, got, want)
		}
	}
}

func TestStoppedAtCleanup(t *testing.T) {
	var b *kafkatest.Broker
	t.Run("owner", func(t *testing.T) {
		b = kafkatest.Start(t, kafkatest.Topic("t", 1))
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.WaitGroupStable(ctx, "g", 1); !errors.Is(err, kafkatest.ErrStopped) {
		t.Errorf("WaitGroupStable after cleanup: %v, want ErrStopped", err)
	}
	client, err := sarama.NewClient(b.Addrs(), newConfig())
	if err == nil {
		_ = client.Close()
		t.Error("a client connected to a cluster stopped at cleanup")
	}
}

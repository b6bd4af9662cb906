// Package memory is an in-process [bus.Publisher] and [bus.Subscriber] with
// Kafka's semantics — partitioned topics, keys kept in order, consumer
// groups with rebalancing, committed offsets, retries and dead letters — for
// tests and local development. It passes the same conformance suite
// (bus/bustest) as the Kafka bus, and keeps nothing when the process ends.
package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/composable-go/composable/bus"
)

// Bus holds topics and consumer groups in memory. It is safe for concurrent
// use.
type Bus struct {
	partitions int
	retry      bus.Retry

	mu      sync.Mutex
	topics  map[string]*topic
	groups  map[string]*group
	changed chan struct{} // closed and replaced when anything changes
}

var (
	_ bus.Publisher  = (*Bus)(nil)
	_ bus.Subscriber = (*Bus)(nil)
)

type topic struct {
	parts [][]record
}

type record struct {
	msg bus.Message
	dl  *bus.DeadLetterInfo
}

type group struct {
	offsets map[tp]int64 // next offset to deliver, per partition
	members []*member
	owners  map[tp]chan struct{} // a token per partition: held by the one worker consuming it
}

type tp struct {
	topic string
	part  int32
}

type member struct {
	topics []string
}

// Option configures a [Bus].
type Option func(*Bus)

// WithPartitions sets how many partitions each topic has. Default 4.
func WithPartitions(n int) Option { return func(b *Bus) { b.partitions = n } }

// WithRetry sets what subscribers do with failing deliveries (see
// [bus.Retry]). Default: the zero Retry.
func WithRetry(r bus.Retry) Option { return func(b *Bus) { b.retry = r } }

// New returns an empty bus.
func New(opts ...Option) *Bus {
	b := &Bus{partitions: 4, topics: map[string]*topic{}, groups: map[string]*group{}, changed: make(chan struct{})}
	for _, o := range opts {
		o(b)
	}
	b.partitions = max(b.partitions, 1)
	return b
}

// Publish implements [bus.Publisher]: the messages are stored when it
// returns.
func (b *Bus) Publish(ctx context.Context, msgs ...bus.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("%w: message without a topic", bus.ErrInvalidMessage)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		b.appendLocked(m.Topic, b.partition(m.Key), record{msg: m})
	}
	b.notifyLocked()
	return nil
}

func (b *Bus) partition(key string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(b.partitions))
}

func (b *Bus) topicLocked(name string) *topic {
	t, ok := b.topics[name]
	if !ok {
		t = &topic{parts: make([][]record, b.partitions)}
		b.topics[name] = t
	}
	return t
}

func (b *Bus) appendLocked(name string, part int32, r record) {
	t := b.topicLocked(name)
	t.parts[part] = append(t.parts[part], r)
}

func (b *Bus) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Messages returns the messages of topic, partition by partition, for
// inspection in tests.
func (b *Bus) Messages(topic string) []bus.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []bus.Message
	if t, ok := b.topics[topic]; ok {
		for _, p := range t.parts {
			for _, r := range p {
				out = append(out, r.msg)
			}
		}
	}
	return out
}

// Subscribe implements [bus.Subscriber]. The member's share of partitions
// is recomputed whenever a member joins or leaves; a partition changes hands
// only once its previous consumer has finished its current delivery, so
// per-key order holds across rebalances.
func (b *Bus) Subscribe(ctx context.Context, groupName string, topics []string, h bus.Handler) error {
	if groupName == "" || len(topics) == 0 || h == nil {
		return fmt.Errorf("%w: a group, topics and a handler are required", bus.ErrInvalidMessage)
	}
	m := &member{topics: slices.Clone(topics)}
	b.mu.Lock()
	g := b.groupLocked(groupName)
	g.members = append(g.members, m)
	for _, t := range topics {
		b.topicLocked(t)
	}
	b.notifyLocked()
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		g.members = slices.DeleteFunc(g.members, func(x *member) bool { return x == m })
		b.notifyLocked()
		b.mu.Unlock()
	}()

	var wg sync.WaitGroup
	running := map[tp]context.CancelFunc{}
	defer func() {
		for _, cancel := range running {
			cancel()
		}
		wg.Wait()
	}()
	for {
		b.mu.Lock()
		want := b.assignmentLocked(g, m)
		changed := b.changed
		b.mu.Unlock()
		for p, cancel := range running { // revoked partitions
			if !want[p] {
				cancel()
				delete(running, p)
			}
		}
		for p := range want { // newly assigned partitions
			if _, ok := running[p]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			running[p] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.consume(wctx, groupName, g, p, h)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (b *Bus) groupLocked(name string) *group {
	g, ok := b.groups[name]
	if !ok {
		g = &group{offsets: map[tp]int64{}, owners: map[tp]chan struct{}{}}
		b.groups[name] = g
	}
	return g
}

// assignmentLocked spreads each topic's partitions round robin over the
// group's members that subscribe to that topic, in a stable order, and
// returns m's share.
func (b *Bus) assignmentLocked(g *group, m *member) map[tp]bool {
	out := map[tp]bool{}
	for _, name := range m.topics {
		var subscribers []*member
		for _, mem := range g.members {
			if slices.Contains(mem.topics, name) {
				subscribers = append(subscribers, mem)
			}
		}
		idx := slices.Index(subscribers, m)
		for p := range b.topicLocked(name).parts {
			if p%len(subscribers) == idx {
				out[tp{topic: name, part: int32(p)}] = true
			}
		}
	}
	return out
}

// consume delivers partition p to h from the group's offset until ctx ends.
func (b *Bus) consume(ctx context.Context, groupName string, g *group, p tp, h bus.Handler) {
	b.mu.Lock()
	token, ok := g.owners[p]
	if !ok {
		token = make(chan struct{}, 1)
		g.owners[p] = token
	}
	b.mu.Unlock()
	select { // wait for the previous owner to let go
	case token <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-token }()
	if ctx.Err() != nil { // revoked while waiting: select may pick either
		return
	}
	for {
		b.mu.Lock()
		offset := g.offsets[p]
		part := b.topics[p.topic].parts[p.part]
		changed := b.changed
		if offset >= int64(len(part)) {
			b.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		r := part[offset]
		b.mu.Unlock()
		d := bus.Delivery{Message: r.msg, Partition: p.part, Offset: offset, DeadLetter: r.dl}
		if err := b.retry.Deliver(ctx, groupName, d, h, b.deadLetter); err != nil {
			// Deliver returns an error only when ctx ended, or, with no
			// bound on attempts, for a permanent failure it cannot
			// dead-letter: wait, then deliver again.
			timer := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				timer.Stop()
				return // revoked or stopped: the next owner redelivers it
			case <-timer.C:
			}
			continue
		}
		b.mu.Lock()
		g.offsets[p] = max(g.offsets[p], offset+1)
		b.mu.Unlock()
	}
}

func (b *Bus) deadLetter(_ context.Context, d bus.Delivery, info bus.DeadLetterInfo) error {
	dlTopic := b.retry.DeadLetterTopicFor(d.Topic)
	if dlTopic == "" {
		return errors.New("memory bus: empty dead-letter topic")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	msg := d.Message
	msg.Topic = dlTopic
	b.appendLocked(dlTopic, b.partition(msg.Key), record{msg: msg, dl: &info})
	b.notifyLocked()
	return nil
}

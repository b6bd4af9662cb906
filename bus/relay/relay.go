// Package relay publishes the event store's global feed to a bus: the event
// log is the outbox. Nothing committed stays unpublished and nothing
// uncommitted is published, because the relay reads only committed events
// and advances its checkpoint only after the bus acknowledged them.
//
// Exactly one relay per name is active at a time, by a [persistence.Lease]
// (a PostgreSQL advisory lock in production): start one in every instance of
// a service, and when the active one dies another takes over from the last
// checkpoint. Delivery is at-least-once: events published after the last
// checkpoint are published again by the next holder.
//
// # Poison events
//
// An event the bus refuses for good — a [bus.Permanent] error, such as a
// topic name the broker cannot have (from a Config.Topic of your own:
// [TopicByType] maps types to legal names) or a message over the
// producer's size limit — would stop the feed: every later event waits behind it. By
// default ([DeadLetterPoison]) the relay then publishes the batch one event
// at a time, and for each event refused for good publishes a dead letter
// to [Config].DeadLetterTopic — the event's coordinates (id, stream,
// version, position, type) and the reason, without its data or metadata,
// which stay in the store — logs it at error level, counts it
// ([Relay.DeadLettered]), publishes a skip marker in the event's place on
// its own topic ([bus.SkipMarker]: the event's coordinates, type and
// reason, so that a bus-fed projection moves past it instead of waiting
// for that version of the stream), and goes on. A dead letter or marker
// the bus refuses for good too is logged and passed over; one refused for
// a while (the bus down) is retried. With [StopOnPoison] the relay retries the event until
// the cause is fixed, as every transient failure.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Config describes a relay. Store, Publisher, Checkpoints and Lease are
// required.
type Config struct {
	// Name names the relay's checkpoint and lease. Default "relay".
	Name string
	// Store is read from its global feed.
	Store persistence.EventStore
	// Publisher receives every event.
	Publisher bus.Publisher
	// Checkpoints keeps the position of the last published event.
	Checkpoints persistence.CheckpointStore
	// Lease keeps a single relay per name active.
	Lease persistence.Lease
	// Topic chooses each event's topic. Default: [TopicByType]("events.").
	Topic func(persistence.RecordedEvent) string
	// Include chooses the events to publish; the others are passed over
	// (the checkpoint still moves past them). Default: every event.
	Include func(persistence.RecordedEvent) bool
	// BatchSize is the most events read and published at once. Default 500.
	BatchSize int
	// PollInterval is how often the feed is polled without a wake-up hint.
	// Default 200ms.
	PollInterval time.Duration
	// CheckpointInterval is how often the checkpoint is saved while events
	// flow; it is also saved when the relay stops. A crash republishes at
	// most the events published since the last save. Default (zero) 250ms;
	// a negative value saves after every batch.
	CheckpointInterval time.Duration
	// MinBackoff and MaxBackoff bound the waits after a failure (the bus or
	// the store down). Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failures. Default [slog.Default].
	Logger *slog.Logger
	// OnPoison says what an event the bus refuses for good does (see the
	// package documentation). Default DeadLetterPoison.
	OnPoison PoisonPolicy
	// DeadLetterTopic receives the dead letters of poison events. Default
	// Name + ".dead-letters", mapped to a legal Kafka topic name as
	// TopicByType maps. It must exist where the broker does not create
	// topics on first use.
	DeadLetterTopic string
	// Meter records composable.relay.published and
	// composable.relay.dead_letters (events), with attribute relay = Name.
	// Default: none recorded.
	Meter metric.Meter
}

// PoisonPolicy says what the relay does with an event the bus refuses for
// good.
type PoisonPolicy int

const (
	// DeadLetterPoison publishes a dead letter for the event and goes on.
	DeadLetterPoison PoisonPolicy = iota
	// StopOnPoison retries the event, holding every later one, until the
	// cause is fixed.
	StopOnPoison
)

// The metadata of a dead letter the relay publishes.
const (
	// MetadataDeadLetterError holds why the bus refused the event.
	MetadataDeadLetterError = "dead-letter-error"
	// MetadataDeadLetterTopic holds the topic it was meant for.
	MetadataDeadLetterTopic = "dead-letter-topic"
)

// ErrInvalidConfig is matched by the errors of [Config.Validate].
var ErrInvalidConfig = errors.New("relay: invalid config")

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	for _, req := range []struct {
		name    string
		missing bool
	}{
		{"Store", c.Store == nil}, {"Publisher", c.Publisher == nil},
		{"Checkpoints", c.Checkpoints == nil}, {"Lease", c.Lease == nil},
	} {
		if req.missing {
			errs = append(errs, fmt.Errorf("%w: %s is required", ErrInvalidConfig, req.name))
		}
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("%w: BatchSize %d", ErrInvalidConfig, c.BatchSize))
	}
	if c.OnPoison != DeadLetterPoison && c.OnPoison != StopOnPoison {
		errs = append(errs, fmt.Errorf("%w: OnPoison %d", ErrInvalidConfig, c.OnPoison))
	}
	return errors.Join(errs...)
}

// TopicByType returns a topic chooser that names a topic after the
// aggregate type of the event's stream ("order/42" goes to prefix+"order").
// The name is mapped to a legal Kafka topic name: each character other
// than a-z, A-Z, 0-9, '.', '_' and '-' becomes '_' ("Order Service/1" goes
// to prefix+"Order_Service"), and the name is cut to 200 bytes — Kafka
// takes 249, and consumers add a dead-letter suffix — so that a type the
// broker could not take still reaches a topic (types that differ only
// there share it).
func TopicByType(prefix string) func(persistence.RecordedEvent) string {
	return func(e persistence.RecordedEvent) string {
		typ, _, _ := strings.Cut(e.StreamID, "/")
		return legalTopic(prefix + typ)
	}
}

// TopicCheck returns a [persistence.EventCheck] that refuses, with an
// error matching persistence.ErrInvalidInput, an event whose topic as
// topic chooses it is not a legal Kafka topic name ([bus.LegalTopic]). Give
// it to the event store with a topic chooser of your own, so that the
// store refuses at append what the relay would dead-letter; TopicByType
// maps every type to a legal name and needs no check.
func TopicCheck(topic func(persistence.RecordedEvent) string) persistence.EventCheck {
	return func(stream string, e persistence.EventData) error {
		if t := topic(persistence.RecordedEvent{EventData: e, StreamID: stream}); !bus.LegalTopic(t) {
			return fmt.Errorf("%w: stream %s goes to topic %s, which is not a legal Kafka topic name",
				persistence.ErrInvalidInput, persistence.Quote(stream), persistence.Quote(t))
		}
		return nil
	}
}

// legalTopic maps name to a legal Kafka topic name (see TopicByType).
func legalTopic(name string) string { return bus.SanitizeTopic(name, maxTopic) }

// maxTopic leaves room under Kafka's 249 bytes for a dead-letter suffix.
const maxTopic = 200

// Relay publishes the feed; see the package documentation. It is safe for
// concurrent use; run it once per process with Run.
type Relay struct {
	cfg          Config
	published    atomic.Int64 // position of the last event the bus acknowledged
	deadLettered atomic.Int64

	attrs                     metric.MeasurementOption
	publishedCount, deadCount metric.Int64Counter

	saveMu sync.Mutex // serialises checkpoint saves
	saved  int64      // last checkpoint saved
}

// New returns a relay for cfg.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "relay"
	}
	if cfg.Topic == nil {
		cfg.Topic = TopicByType("events.")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 10*time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 250 * time.Millisecond
	}
	if cfg.DeadLetterTopic == "" {
		cfg.DeadLetterTopic = legalTopic(cfg.Name + ".dead-letters") // a Name like "billing/outbox" too
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	r := &Relay{cfg: cfg, attrs: metric.WithAttributes(attribute.String("relay", cfg.Name))}
	var err error
	if r.publishedCount, err = cfg.Meter.Int64Counter("composable.relay.published", metric.WithUnit("{event}"),
		metric.WithDescription("Events the bus acknowledged.")); err != nil {
		return nil, err
	}
	if r.deadCount, err = cfg.Meter.Int64Counter("composable.relay.dead_letters", metric.WithUnit("{event}"),
		metric.WithDescription("Events the bus refused for good, dead-lettered and passed over.")); err != nil {
		return nil, err
	}
	return r, nil
}

// DeadLettered returns how many poison events this relay dead-lettered
// and passed over since it was created.
func (r *Relay) DeadLettered() int64 { return r.deadLettered.Load() }

// Published returns the position of the last event this relay published
// and the bus acknowledged (or passed over, see Config.Include), 0 before
// the first.
func (r *Relay) Published() int64 { return r.published.Load() }

// errLeaseLost ends a run whose lease was lost.
var errLeaseLost = errors.New("relay: lease lost")

// Run relays until ctx ends, then returns nil. It waits for the lease,
// relays while it holds it, and starts over — after a back-off — when
// anything fails or the lease is lost.
func (r *Relay) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	for ctx.Err() == nil {
		before := r.published.Load()
		err := r.hold(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if r.published.Load() > before {
			backoff = r.cfg.MinBackoff
		}
		r.cfg.Logger.Warn("relay: restarting", slog.String("relay", r.cfg.Name), slog.Any("error", err), slog.Duration("after", backoff))
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
	return nil
}

// hold acquires the lease and relays until it is lost or something fails.
func (r *Relay) hold(ctx context.Context) error {
	lost, release, err := r.cfg.Lease.Acquire(ctx, r.cfg.Name)
	if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	defer release()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-lost:
			cancel()
		case <-runCtx.Done():
		}
	}()
	defer wg.Wait()
	defer cancel()

	from, err := r.cfg.Checkpoints.LoadCheckpoint(runCtx, r.cfg.Name)
	if err != nil {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	r.published.Store(from)
	r.saveMu.Lock()
	r.saved = from
	r.saveMu.Unlock()
	// Save the checkpoint every CheckpointInterval while events flow — and
	// once more when they stop, or when the relay stops.
	if r.cfg.CheckpointInterval > 0 {
		wg.Add(1)
		go r.saveEvery(runCtx, &wg)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.save(ctx); err != nil {
			r.cfg.Logger.Warn("relay: final checkpoint not saved", slog.String("relay", r.cfg.Name), slog.Any("error", err))
		}
	}()
	err = persistence.Subscribe(runCtx, r.cfg.Store, from, persistence.SubscribeOptions{
		BatchSize: r.cfg.BatchSize, PollInterval: r.cfg.PollInterval, MaxBackoff: r.cfg.MaxBackoff,
		OnReadError: func(err error) {
			r.cfg.Logger.Warn("relay: reading the feed failed; retrying", slog.String("relay", r.cfg.Name), slog.Any("error", err))
		},
	}, r.publish)
	select {
	case <-lost:
		return errLeaseLost
	default:
	}
	return err
}

// publish sends one batch, retrying until the bus accepts it, then saves
// the checkpoint.
func (r *Relay) publish(ctx context.Context, events []persistence.RecordedEvent) error {
	msgs := make([]bus.Message, 0, len(events))
	for _, e := range events {
		if r.cfg.Include == nil || r.cfg.Include(e) {
			msgs = append(msgs, bus.Message{Topic: r.cfg.Topic(e), Key: e.StreamID, Event: e})
		}
	}
	backoff := r.cfg.MinBackoff
	published := len(msgs)
	for len(msgs) > 0 {
		err := r.cfg.Publisher.Publish(ctx, msgs...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		level := slog.LevelWarn
		if !bus.IsRetryable(err) {
			if r.cfg.OnPoison == DeadLetterPoison {
				if published, err = r.publishEach(ctx, msgs); err != nil {
					return err
				}
				break
			}
			level = slog.LevelError // an event the bus can never take: stuck until fixed
		}
		r.cfg.Logger.Log(ctx, level, "relay: publish failed; retrying", slog.String("relay", r.cfg.Name), slog.Int("events", len(msgs)), slog.Any("error", err))
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
	r.published.Store(events[len(events)-1].GlobalPosition)
	r.publishedCount.Add(ctx, int64(published), r.attrs)
	if r.cfg.CheckpointInterval <= 0 {
		return r.save(ctx)
	}
	return nil
}

// publishEach publishes msgs one at a time, in order, after the bus
// refused their batch for good: each one it refuses for good on its own is
// dead-lettered; transient failures are retried. It returns how many the
// bus took.
func (r *Relay) publishEach(ctx context.Context, msgs []bus.Message) (int, error) {
	published := 0
	for _, m := range msgs {
		err := r.retry(ctx, m)
		if err == nil {
			published++
			continue
		}
		if ctx.Err() != nil {
			return published, ctx.Err()
		}
		r.deadLettered.Add(1)
		r.deadCount.Add(ctx, 1, r.attrs)
		r.cfg.Logger.Error("relay: the bus refuses the event for good; dead-lettered and passed over", slog.String("relay", r.cfg.Name),
			slog.String("event", persistence.Quote(m.Event.ID)), slog.String("stream", persistence.Quote(m.Event.StreamID)),
			slog.Int64("position", m.Event.GlobalPosition), slog.Any("error", err))
		if err := r.retry(ctx, r.deadLetter(m, err)); err != nil {
			if ctx.Err() != nil {
				return published, ctx.Err()
			}
			r.cfg.Logger.Error("relay: the dead letter is refused too; the event is passed over, recorded only here", slog.String("relay", r.cfg.Name),
				slog.String("event", persistence.Quote(m.Event.ID)), slog.Int64("position", m.Event.GlobalPosition), slog.Any("error", err))
		}
		if err := r.retry(ctx, r.skipMarker(m, err)); err != nil {
			if ctx.Err() != nil {
				return published, ctx.Err()
			}
			r.cfg.Logger.Error("relay: the skip marker is refused too; consumers of the stream wait for the event", slog.String("relay", r.cfg.Name),
				slog.String("event", persistence.Quote(m.Event.ID)), slog.String("topic", persistence.Quote(m.Topic)), slog.Any("error", err))
		}
		// The decision to skip is final: checkpoint it at once, so that a
		// relay that takes over does not publish the event after its
		// marker — consumers that took the marker would drop it.
		r.published.Store(m.Event.GlobalPosition)
		if err := r.save(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("relay: checkpoint after a dead letter not saved", slog.String("relay", r.cfg.Name), slog.Any("error", err))
		}
	}
	return published, nil
}

// skipMarker is the marker that stands for m's event, refused with cause,
// on its own topic (bus.SkipMarker): its id, stream and type bounded as a
// dead letter's, its reason to 256 bytes — a few KiB at most.
func (r *Relay) skipMarker(m bus.Message, cause error) bus.Message {
	dl := r.deadLetter(m, cause)
	e := m.Event
	e.ID, e.Type, e.StreamID = dl.Event.ID, dl.Event.Type, dl.Event.StreamID
	return bus.SkipMarker(bus.Message{Topic: m.Topic, Key: dl.Key, Event: e}, truncate(cause.Error(), 256))
}

// retry publishes m until the bus takes it, refuses it for good (that
// error is returned), or ctx ends.
func (r *Relay) retry(ctx context.Context, m bus.Message) error {
	backoff := r.cfg.MinBackoff
	for {
		err := r.cfg.Publisher.Publish(ctx, m)
		if err == nil || !bus.IsRetryable(err) || ctx.Err() != nil {
			return err
		}
		r.cfg.Logger.Warn("relay: publish failed; retrying", slog.String("relay", r.cfg.Name), slog.Int("events", 1), slog.Any("error", err))
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// deadLetter is the dead letter of m, refused with cause: its coordinates
// and the reason, bounded in size, without its data and metadata (the
// store keeps them).
func (r *Relay) deadLetter(m bus.Message, cause error) bus.Message {
	e := m.Event
	return bus.Message{Topic: r.cfg.DeadLetterTopic, Key: truncate(m.Key, persistence.MaxIDLength), Event: persistence.RecordedEvent{
		EventData: persistence.EventData{
			ID: truncate(e.ID, persistence.MaxIDLength), Type: truncate(e.Type, persistence.MaxIDLength), SchemaVersion: e.SchemaVersion,
			Data: []byte{},
			Metadata: map[string]string{
				MetadataDeadLetterError: truncate(cause.Error(), 1024),
				MetadataDeadLetterTopic: truncate(m.Topic, 256),
			},
		},
		StreamID: truncate(e.StreamID, persistence.MaxIDLength), Version: e.Version, GlobalPosition: e.GlobalPosition, RecordedAt: e.RecordedAt,
	}}
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// saveEvery saves the checkpoint every CheckpointInterval until ctx ends.
func (r *Relay) saveEvery(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(r.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.save(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("relay: checkpoint not saved; will retry", slog.String("relay", r.cfg.Name), slog.Any("error", err))
			}
		}
	}
}

// save records the position of the last acknowledged event, if it moved.
// A failed save loses nothing: the next holder starts from the older
// checkpoint and publishes duplicates.
func (r *Relay) save(ctx context.Context) error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	last := r.published.Load()
	if last <= r.saved {
		return nil
	}
	if err := r.cfg.Checkpoints.SaveCheckpoint(ctx, r.cfg.Name, last); err != nil {
		return fmt.Errorf("save checkpoint %d: %w", last, err)
	}
	r.saved = last
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

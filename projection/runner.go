package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/internal/readahead"
	"github.com/composable-go/composable/persistence"
)

// Options tunes a [Runner]. Lease is required.
type Options struct {
	// Lease keeps one runner per projection name active across processes
	// (the lease is named "projection:" + Name); the others wait and take
	// over when the holder dies.
	Lease persistence.Lease
	// BatchSize is the most events applied in one transaction. Default 500.
	BatchSize int
	// PollInterval is how often the feed is read when the event store gives
	// no hint of new events, and how often WaitFor re-reads a checkpoint
	// kept by a runner in another process. Default 200ms.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the waits after a failure (the store
	// down, a handler failing under the Retry policy). Defaults 100ms, 10s.
	MinBackoff, MaxBackoff time.Duration
	// Clock times polls and back-offs. Default [composable.SystemClock].
	Clock composable.Clock
	// Logger receives failures and rebuild progress. Default slog.Default().
	Logger *slog.Logger
	// Meter records the metrics composable.projection.lag (events),
	// composable.projection.applied and composable.projection.failures,
	// with the attribute projection=Name. Default: none.
	Meter metric.Meter
}

// Runner feeds one projection from the global feed of an event store:
// catching up from its checkpoint, then following new events. It runs the
// projection only while it holds the projection's lease. Pause, Resume,
// Rebuild, Lag and WaitFor may be called from any goroutine.
type Runner[Tx any] struct {
	feed  persistence.EventStore
	store Store[Tx]
	p     Projection[Tx]
	opts  Options
	attrs metric.MeasurementOption

	applied, failures metric.Int64Counter
	lagGauge          metric.Int64ObservableGauge

	checkpoint atomic.Int64 // last checkpoint this process saw
	active     atomic.Bool

	mu       sync.Mutex
	paused   bool
	advanced chan struct{} // closed and replaced when the checkpoint moves
	wake     chan struct{} // pause, resume, rebuild: re-check now
	running  bool
}

// NewRunner returns a runner of p that reads feed and writes to store.
func NewRunner[Tx any](feed persistence.EventStore, store Store[Tx], p Projection[Tx], opts Options) (*Runner[Tx], error) {
	errs := []error{p.Validate()}
	if feed == nil || store == nil {
		errs = append(errs, fmt.Errorf("%w: feed and store are required", ErrInvalid))
	}
	if opts.Lease == nil {
		errs = append(errs, fmt.Errorf("%w: Options.Lease is required", ErrInvalid))
	}
	if opts.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("%w: BatchSize %d", ErrInvalid, opts.BatchSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 500
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 200 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 10*time.Second)
	}
	if opts.Clock == nil {
		opts.Clock = composable.SystemClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	r := &Runner[Tx]{feed: feed, store: store, p: guarded(p), opts: opts,
		attrs:    metric.WithAttributes(attribute.String("projection", p.Name)),
		advanced: make(chan struct{}), wake: make(chan struct{}, 1)}
	var err error
	if r.applied, r.failures, err = counters(opts.Meter); err != nil {
		return nil, err
	}
	if r.lagGauge, err = opts.Meter.Int64ObservableGauge("composable.projection.lag", metric.WithUnit("{event}"),
		metric.WithDescription("Head of the event feed minus the projection's checkpoint.")); err != nil {
		return nil, err
	}
	return r, nil
}

// counters returns the counters runners and bus handlers record.
func counters(m metric.Meter) (applied, failures metric.Int64Counter, err error) {
	if applied, err = m.Int64Counter("composable.projection.applied", metric.WithUnit("{event}"),
		metric.WithDescription("Events applied to the read model (including those skipped as already applied).")); err != nil {
		return nil, nil, err
	}
	if failures, err = m.Int64Counter("composable.projection.failures", metric.WithUnit("{event}"),
		metric.WithDescription("Handler failures, by policy.")); err != nil {
		return nil, nil, err
	}
	return applied, failures, nil
}

// Name returns the projection's name.
func (r *Runner[Tx]) Name() string { return r.p.Name }

// Run runs the projection until ctx ends, returning nil, or until the Stop
// policy stops it, returning an error matching ErrStopped. It waits for the
// lease first; if the lease is lost, it stops applying and waits for it
// again. Run may be called once at a time per runner.
func (r *Runner[Tx]) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return fmt.Errorf("%w: runner of %s is already running", ErrInvalid, r.p.Name)
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	reg, err := r.opts.Meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if lag, err := r.Lag(ctx); err == nil {
			o.ObserveInt64(r.lagGauge, lag, r.attrs)
		}
		return nil
	}, r.lagGauge)
	if err != nil {
		return err
	}
	defer func() { _ = reg.Unregister() }()

	backoff := r.opts.MinBackoff
	for ctx.Err() == nil {
		lost, release, err := r.opts.Lease.Acquire(ctx, "projection:"+r.p.Name)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.opts.Logger.Warn("projection: lease not acquired; retrying", "projection", r.p.Name, "error", err)
			if !r.sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, r.opts.MaxBackoff)
			continue
		}
		backoff = r.opts.MinBackoff
		err = r.hold(ctx, lost)
		release()
		if err != nil {
			return err
		}
	}
	return nil
}

// hold runs the projection while the lease lasts.
func (r *Runner[Tx]) hold(ctx context.Context, lost <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lost:
			r.opts.Logger.Warn("projection: lease lost; standing by", "projection", r.p.Name)
			cancel()
		case <-ctx.Done():
		}
	}()
	r.active.Store(true)
	defer r.active.Store(false)
	err := r.loop(ctx)
	if ctx.Err() != nil && !errors.Is(err, ErrStopped) {
		return nil
	}
	return err
}

// loop applies the feed to the projection — and, during a rebuild, to the
// generation being built — until ctx ends.
func (r *Runner[Tx]) loop(ctx context.Context) error {
	live, err := r.loadCheckpoint(ctx, r.p.Name)
	if err != nil {
		return err
	}
	r.setCheckpoint(live)
	rb := newRebuild(r)
	if err := rb.check(ctx); err != nil {
		return err
	}
	notifier, _ := r.feed.(persistence.Notifier)
	var ahead readahead.Page[persistence.RecordedEvent]
	defer ahead.Wait()
	for {
		if !r.waitUnpaused(ctx) {
			return nil
		}
		var hint <-chan struct{}
		if notifier != nil {
			hint = notifier.Appended()
		}
		events, ok := ahead.Take(live, r.opts.BatchSize)
		if !ok {
			if events, err = r.read(ctx, live); err != nil {
				return err
			}
		}
		if len(events) == r.opts.BatchSize {
			// Catching up: read the next page while this one is applied.
			after := events[len(events)-1].GlobalPosition
			ahead.Start(after, func() ([]persistence.RecordedEvent, error) { return r.feed.ReadAll(ctx, after, r.opts.BatchSize) })
		}
		moved := false
		if len(events) > 0 {
			if live, err = r.applyBatch(ctx, r.p, live, events); err != nil {
				return err
			}
			r.setCheckpoint(live)
			moved = true
		}
		caughtUp := len(events) < r.opts.BatchSize
		if rb.building != "" {
			built, err := rb.step(ctx, live, caughtUp)
			if err != nil {
				return err
			}
			if built > 0 {
				live = built
				r.setCheckpoint(live)
			}
		}
		if (moved && !caughtUp) || rb.moved {
			continue
		}
		if err := rb.checkEvery(ctx); err != nil {
			return err
		}
		if rb.building != "" && !rb.failed {
			continue // a rebuild just found: start at once
		}
		poll, stop := r.timer(r.opts.PollInterval)
		select {
		case <-ctx.Done():
		case <-hint:
		case <-r.wake:
		case <-poll:
		}
		stop()
	}
}

// read reads the next batch of the feed, retrying read failures.
func (r *Runner[Tx]) read(ctx context.Context, after int64) ([]persistence.RecordedEvent, error) {
	backoff := r.opts.MinBackoff
	for {
		events, err := r.feed.ReadAll(ctx, after, r.opts.BatchSize)
		if err == nil || ctx.Err() != nil {
			return events, ctxNil(ctx, err)
		}
		r.opts.Logger.Warn("projection: reading the feed failed; retrying", "projection", r.p.Name, "after", after, "error", err)
		if !r.sleep(ctx, backoff) {
			return nil, nil
		}
		backoff = min(2*backoff, r.opts.MaxBackoff)
	}
}

// loadCheckpoint reads a checkpoint, retrying failures.
func (r *Runner[Tx]) loadCheckpoint(ctx context.Context, name string) (int64, error) {
	backoff := r.opts.MinBackoff
	for {
		pos, err := r.store.Checkpoint(ctx, name)
		if err == nil || ctx.Err() != nil {
			return pos, ctxNil(ctx, err)
		}
		r.opts.Logger.Warn("projection: reading the checkpoint failed; retrying", "projection", name, "error", err)
		if !r.sleep(ctx, backoff) {
			return 0, nil
		}
		backoff = min(2*backoff, r.opts.MaxBackoff)
	}
}

// applyBatch applies events (all after checkpoint from) to p, following
// p's failure policy, and returns the new checkpoint. A handler failure at
// event k first applies the events before k on their own; the failing
// event is then at the head of the next batch, where the policy decides.
func (r *Runner[Tx]) applyBatch(ctx context.Context, p Projection[Tx], from int64, events []persistence.RecordedEvent) (int64, error) {
	backoff := r.opts.MinBackoff
	pos := from
	for len(events) > 0 {
		err := r.store.Apply(ctx, p, events)
		if err == nil {
			r.applied.Add(ctx, int64(len(events)), r.attrs)
			return events[len(events)-1].GlobalPosition, nil
		}
		if ctx.Err() != nil {
			return pos, nil
		}
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Index < 0 || ae.Index >= len(events) {
			if errors.Is(err, ErrInvalid) {
				return pos, err
			}
			r.opts.Logger.Warn("projection: store failed; retrying", "projection", p.Name, "error", err)
			if !r.sleep(ctx, backoff) {
				return pos, nil
			}
			backoff = min(2*backoff, r.opts.MaxBackoff)
			continue
		}
		if errors.Is(ae, ErrPartiallyApplied) {
			// The store applied the batch, checkpoint included, and
			// dead-lettered the event: nothing to retry or skip.
			r.failures.Add(ctx, 1, r.attrs, metric.WithAttributes(attribute.String("policy", p.OnFailure.String())))
			r.opts.Logger.Error("projection: a write failed after the batch was applied; the event is in the dead letters", "projection", p.Name, "error", ae)
			if p.OnFailure == Stop {
				return pos, fmt.Errorf("%w: %s: %w", ErrStopped, p.Name, ae)
			}
			return r.loadCheckpoint(ctx, p.Name)
		}
		if ae.Index > 0 {
			events = events[:ae.Index] // the events before the failing one
			continue
		}
		policy := p.OnFailure.effective(ae.Err)
		r.failures.Add(ctx, 1, r.attrs, metric.WithAttributes(attribute.String("policy", policy.String())))
		switch policy {
		case Stop:
			r.opts.Logger.Error("projection: handler failed; stopping", "projection", p.Name, "error", ae)
			return pos, fmt.Errorf("%w: %s: %w", ErrStopped, p.Name, ae)
		case SkipAndDeadLetter:
			r.opts.Logger.Error("projection: handler failed; dead-lettering the event", "projection", p.Name, "error", ae)
			if err := r.deadLetter(ctx, p.Name, ae); err != nil {
				return pos, err
			}
			pos = ae.Event.GlobalPosition
			events = events[1:]
			backoff = r.opts.MinBackoff
		default:
			r.opts.Logger.Warn("projection: handler failed; retrying", "projection", p.Name, "error", ae, "backoff", backoff)
			if !r.sleep(ctx, backoff) {
				return pos, nil
			}
			backoff = min(2*backoff, r.opts.MaxBackoff)
		}
	}
	return pos, nil
}

// deadLetter records a dead letter, retrying store failures.
func (r *Runner[Tx]) deadLetter(ctx context.Context, name string, ae *ApplyError) error {
	backoff := r.opts.MinBackoff
	for {
		err := r.store.DeadLetter(ctx, name, ae.Event, ae.Err)
		if err == nil || ctx.Err() != nil {
			return ctxNil(ctx, err)
		}
		r.opts.Logger.Warn("projection: dead letter not recorded; retrying", "projection", name, "error", err)
		if !r.sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.opts.MaxBackoff)
	}
}

// Pause stops the runner applying events after the batch in flight; it
// keeps the lease. Pausing is local to this runner.
func (r *Runner[Tx]) Pause() {
	r.mu.Lock()
	r.paused = true
	r.mu.Unlock()
	r.poke()
}

// Resume undoes Pause.
func (r *Runner[Tx]) Resume() {
	r.mu.Lock()
	r.paused = false
	r.mu.Unlock()
	r.poke()
}

// Paused reports whether the runner is paused.
func (r *Runner[Tx]) Paused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused
}

// Active reports whether this runner holds the lease and is running the
// projection.
func (r *Runner[Tx]) Active() bool { return r.active.Load() }

func (r *Runner[Tx]) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitUnpaused blocks while paused; false when ctx ended.
func (r *Runner[Tx]) waitUnpaused(ctx context.Context) bool {
	for r.Paused() {
		select {
		case <-ctx.Done():
			return false
		case <-r.wake:
		}
	}
	return ctx.Err() == nil
}

// Lag returns the head of the feed minus the projection's checkpoint, as
// stored (so it is right whichever process runs the projection). The feed
// must implement [persistence.HeadReader].
func (r *Runner[Tx]) Lag(ctx context.Context) (int64, error) {
	h, ok := r.feed.(persistence.HeadReader)
	if !ok {
		return 0, fmt.Errorf("%w: the event store does not report its head", ErrInvalid)
	}
	head, err := h.Head(ctx)
	if err != nil {
		return 0, err
	}
	pos, err := r.store.Checkpoint(ctx, r.p.Name)
	if err != nil {
		return 0, err
	}
	return max(head-pos, 0), nil
}

// Rebuild starts rebuilding the projection into a fresh generation (see
// [Rebuilder]). The active runner — this one or one in another process —
// builds it alongside the live one and switches over once it has caught
// up; queries see the old model until then. It returns ErrNoRebuild if the
// store cannot rebuild.
func (r *Runner[Tx]) Rebuild(ctx context.Context) error {
	rb, ok := r.store.(Rebuilder)
	if !ok {
		return ErrNoRebuild
	}
	if _, err := rb.StartRebuild(ctx, r.p.Name); err != nil {
		return err
	}
	r.poke()
	return nil
}

// setCheckpoint records a new checkpoint and wakes WaitFor callers.
func (r *Runner[Tx]) setCheckpoint(pos int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pos == r.checkpoint.Load() {
		return
	}
	r.checkpoint.Store(pos)
	close(r.advanced)
	r.advanced = make(chan struct{})
}

// WaitFor blocks until the projection's checkpoint reaches position — the
// Position of a command's result, say — so that a query reads the command's
// writes. It returns nil then, or, when ctx ends first, a *LagError
// matching ErrNotCaughtUp and ctx's error. It learns of progress from this
// runner at once, and from a runner in another process by reading the
// stored checkpoint every PollInterval.
func (r *Runner[Tx]) WaitFor(ctx context.Context, position int64) error {
	for {
		r.mu.Lock()
		advanced := r.advanced
		r.mu.Unlock()
		if r.checkpoint.Load() >= position {
			return nil
		}
		if pos, err := r.store.Checkpoint(ctx, r.p.Name); err == nil && pos >= position {
			return nil
		}
		poll, stop := r.timer(r.opts.PollInterval)
		select {
		case <-ctx.Done():
			stop()
			return &LagError{Name: r.p.Name, Position: position, Checkpoint: r.checkpoint.Load(), Err: ctx.Err()}
		case <-advanced:
		case <-poll:
		}
		stop()
	}
}

// LagError is WaitFor's error when ctx ends before the projection catches
// up. It matches ErrNotCaughtUp and unwraps to ctx's error.
type LagError struct {
	Name string
	// Stream is set by WaitForStream: Position and Checkpoint are then
	// versions of the stream, wanted and applied.
	Stream               string
	Position, Checkpoint int64
	Err                  error
}

func (e *LagError) Error() string {
	if e.Stream != "" {
		return fmt.Sprintf("projection %s: stream %s at version %d, not yet %d: %v", e.Name, e.Stream, e.Checkpoint, e.Position, e.Err)
	}
	return fmt.Sprintf("projection %s: at position %d, not yet %d: %v", e.Name, e.Checkpoint, e.Position, e.Err)
}

// Unwrap returns ErrNotCaughtUp and ctx's error.
func (e *LagError) Unwrap() []error { return []error{ErrNotCaughtUp, e.Err} }

// WaitFor is [Runner.WaitFor] for processes that do not run the
// projection: it polls store's checkpoint of name every poll.
func WaitFor[Tx any](ctx context.Context, store Store[Tx], name string, position int64, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	var pos int64
	for {
		var err error
		if pos, err = store.Checkpoint(ctx, name); err == nil && pos >= position {
			return nil
		}
		select {
		case <-ctx.Done():
			return &LagError{Name: name, Position: position, Checkpoint: pos, Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// timer is a one-shot timer on the runner's clock, stopped (when the clock
// allows) by stop.
func (r *Runner[Tx]) timer(d time.Duration) (<-chan time.Time, func()) {
	if tc, ok := r.opts.Clock.(composable.TimerClock); ok {
		return tc.NewTimer(d)
	}
	return r.opts.Clock.After(d), func() {}
}

// sleep waits d on the runner's clock; false when ctx ended first.
func (r *Runner[Tx]) sleep(ctx context.Context, d time.Duration) bool {
	c, stop := r.timer(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}

// ctxNil hides the error of a ctx that ended: stopping is not a failure.
func ctxNil(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

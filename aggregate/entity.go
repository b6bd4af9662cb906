package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// entity is the actor of one aggregate. It handles one message at a time;
// store calls happen on its goroutine, so commands that arrive meanwhile —
// during recovery too — wait in the mailbox and run in arrival order.
type entity[S, C, E, Env any] struct {
	h      *host[S, C, E, Env]
	route  *route[S, C, E] // its exec is held while a message is handled
	id     string
	stream string
	self   *protoactor.PID
	runner *composable.EffectRunner[C]

	// gate orders effect commands and snapshot results sent to self against
	// the actor stopping, so nothing is sent to a dead actor.
	gate    sync.RWMutex
	stopped bool

	state     S
	next      S // scratch: the state a command's events lead to
	version   int64
	recovered bool   // state reflects the store
	dirty     bool   // state may be wrong: rehydrate before the next message
	placedAt  uint64 // the Remote's epoch when the state was read (in a cluster)
	dedup     *dedupWindow
	epoch     uint64 // commands and queries handled: see the stop handshake in manager.go
	// refusedEviction is set while the aggregate, busy, refused an
	// eviction; it tells the manager once it is idle (evictable).
	refusedEviction atomic.Bool
	stored          []persistence.TimerChange // timer changes the command being answered stored, for the observer

	watchdog watchdog // ends commands that overrun CommandTimeout

	pending     *pendingAppend[S, C, E] // a command whose append is in flight
	wake        chan struct{}           // one token per pending append, when it completes
	settleLater func()                  // asks the actor to settle the pending append

	snapVersion int64 // version of the latest snapshot saved or loaded
	snapping    bool  // a snapshot write is in flight

	failures int       // consecutive store failures
	retryAt  time.Time // refuse commands until then
	lastErr  error
}

type snapshotDone struct {
	version int64
	err     error
}

func (snapshotDone) IgnoreDeadLetterLogging() {}

func newEntity[S, C, E, Env any](h *host[S, C, E, Env], id string, r *route[S, C, E]) *entity[S, C, E, Env] {
	return &entity[S, C, E, Env]{h: h, route: r, id: id, stream: streamName(h.def.Type, id)}
}

func (e *entity[S, C, E, Env]) Receive(ctx protoactor.Context) {
	e.route.exec.Lock()
	defer e.route.exec.Unlock()
	switch ctx.Message().(type) {
	case *envelope[S, C, E], settlePending, snapshotDone, passivateCheck, stopIfIdle, drained:
		e.route.queued.Add(-1) // posted through route.post
	}
	defer e.evictableAgain(ctx)
	switch msg := ctx.Message().(type) {
	case *protoactor.Started:
		e.self = ctx.Self()
		e.wake = make(chan struct{}, 1)
		e.settleLater = func() { e.tell(settlePending{}) }
		e.runner = composable.NewEffectRunner(e.h.rt.clock, e.feedBack)
	case *envelope[S, C, E]:
		e.settle()
		e.handle(msg)
	case settlePending:
		e.settle()
	case snapshotDone:
		e.snapping = false
		if msg.err == nil {
			e.snapVersion = max(e.snapVersion, msg.version)
		}
	case passivateCheck:
		e.route.checking.Store(false)
		e.settle()
		e.passivate(ctx)
	case stopIfIdle:
		e.settle()
		if e.stopIfIdle(msg) {
			ctx.Stop(ctx.Self())
		} else {
			e.refusedEviction.Store(msg.evict)
			ctx.Send(ctx.Parent(), stopCancelled{pid: ctx.Self()})
		}
	case *protoactor.Stopping:
		e.settle()
		e.gate.Lock()
		e.stopped = true
		e.gate.Unlock()
		e.runner.Close()
		e.watchdog.close()
	}
}

// feedBack sends a command produced by an effect to self.
func (e *entity[S, C, E, Env]) feedBack(ctx context.Context, cmd C) {
	e.tell(&envelope[S, C, E]{ctx: ctx, id: e.id, cmd: cmd})
}

func (e *entity[S, C, E, Env]) tell(msg any) {
	e.gate.RLock()
	defer e.gate.RUnlock()
	if !e.stopped {
		e.route.post(e.h.rt.sys.ActorSystem().Root.Send, msg)
	}
}

// runInline handles a direct command on the sender's goroutine, the caller
// holding the route's exec with nothing queued, if the aggregate is in its
// steady state: recovered, and no append in flight (one that completed is
// taken in first). Otherwise it reports false, and the command goes
// through the mailbox.
func (e *entity[S, C, E, Env]) runInline(m *envelope[S, C, E]) bool {
	if e.self == nil || !e.trySettle() || !e.recovered || e.dirty || e.moved() {
		return false
	}
	e.handle(m)
	return true
}

// moved reports whether, in a cluster, ownership may have changed since
// the state was read: the Remote's epoch moved.
func (e *entity[S, C, E, Env]) moved() bool {
	r := e.h.rt.remote
	return r != nil && e.recovered && r.Epoch() != e.placedAt
}

// handle answers one command or query. Every path replies exactly once.
func (e *entity[S, C, E, Env]) handle(m *envelope[S, C, E]) {
	e.epoch++
	res, err := e.process(m)
	if errors.Is(err, errDeferred) {
		return // the pending append answers
	}
	e.answer(m, res, err)
}

// answer replies to the command's caller, or logs the failure of a
// command from an effect, and frees the command's in-flight slot.
func (e *entity[S, C, E, Env]) answer(m *envelope[S, C, E], res Result[S, E], err error) {
	e.h.observeHandled(m, res, err, e.stored)
	e.stored = nil
	if m.slots != nil {
		m.slots.free()
		defer e.h.rt.inflight.Done()
	}
	if m.reply != nil {
		m.reply <- reply[S, E]{res: res, err: err}
		return
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		e.h.rt.logger.Warn("aggregate: command from an effect failed", slog.String("stream", e.stream),
			slog.String("command", fmt.Sprintf("%T", m.cmd)), slog.Any("error", err))
	}
}

func (e *entity[S, C, E, Env]) process(m *envelope[S, C, E]) (res Result[S, E], err error) {
	defer func() {
		if v := recover(); v != nil { // a bug outside user code; never kill the actor
			e.dirty = true
			err = fmt.Errorf("aggregate %s: %w", e.stream, &composable.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	if m.reply == nil && composable.Cancelled(m.ctx) {
		return res, context.Canceled // an effect cancelled since it sent this
	}
	if m.ctx.Err() != nil {
		return res, m.ctx.Err() // the caller gave up before we started
	}
	if e.failures > 0 && e.h.rt.clock.Now().Before(e.retryAt) {
		return res, fmt.Errorf("%w: %s: %w", ErrUnavailable, e.stream, e.lastErr)
	}
	c := e.watchdog.start(m.ctx, e.h.opts.CommandTimeout)
	defer func() {
		if !errors.Is(err, errDeferred) {
			e.watchdog.stop(c)
		}
	}()
	var ctx context.Context = c
	if m.timer != nil && e.recovered && armedVersion(m.timer.FireID) > e.version {
		// Another activation armed this timer: this one is out of date,
		// and would take the firing for a stale one.
		e.dirty = true
	}
	if e.moved() {
		e.dirty = true // another process may have owned it meanwhile
	}
	if !e.recovered || e.dirty {
		activating := !e.recovered
		if err := e.rehydrate(ctx); err != nil {
			return res, e.storeFailed(err)
		}
		if activating {
			e.activate(m)
		}
	}
	if m.query {
		return Result[S, E]{State: e.h.def.Clone(e.state), Version: e.version}, nil
	}
	if m.commandID != "" {
		if rec, ok := e.dedup.get(m.commandID); ok {
			return e.duplicate(ctx, rec)
		}
	}
	run := instance{commandID: m.commandID}
	if run.commandID == "" {
		run = e.h.rt.ids.next()
	}
	return e.attempts(c, m, run, 0)
}

// attempts runs attempts of the command, from attempt number first, until
// one is not a concurrency conflict or Options.MaxAttempts have run. Only
// the first may defer its outcome to a pending append (errDeferred).
func (e *entity[S, C, E, Env]) attempts(c *commandContext, m *envelope[S, C, E], run instance, first int) (Result[S, E], error) {
	var res Result[S, E]
	for i := first; i < e.h.opts.MaxAttempts; i++ {
		if i > 0 && m.commandID != "" {
			if rec, ok := e.dedup.get(m.commandID); ok {
				return e.duplicate(c, rec) // the other writer handled this very command
			}
		}
		var retry bool
		var err error
		res, retry, err = e.attempt(c, m, run, i == 0)
		if !retry {
			return res, err
		}
	}
	return res, fmt.Errorf("%w: %s: %d attempts conflicted with other writers", ErrTooManyAttempts, e.stream, e.h.opts.MaxAttempts)
}

// attempt runs the command once against the current state. retry reports
// a concurrency conflict after which the state was brought up to date.
// With mayDefer, a command whose success needs nothing more of the actor
// (no effect, no snapshot due) is appended through the store's callback,
// if it has one: attempt then returns errDeferred, the caller is answered
// from the store's goroutine, and the actor takes the outcome in at its
// next message (settle).
func (e *entity[S, C, E, Env]) attempt(c *commandContext, m *envelope[S, C, E], run instance, mayDefer bool) (res Result[S, E], retry bool, err error) {
	def := e.h.def
	decision, err := safeHandle(def.Handle, e.state, m.cmd, def.Env)
	if err != nil {
		var perr *composable.PanicError
		if errors.As(err, &perr) {
			e.dirty = true // Handle may have mutated shared parts of the state
			return res, false, fmt.Errorf("aggregate %s: handle %T: %w", e.stream, m.cmd, err)
		}
		return res, false, &RejectedError{Type: def.Type, ID: e.id, Err: err}
	}
	if len(decision.Events) == 0 {
		if len(decision.Timers) > 0 {
			return res, false, fmt.Errorf("%w: %s: %T arms or cancels timers without recording an event", ErrInvalidDecision, e.stream, m.cmd)
		}
		if m.timer != nil && !decision.Effect.IsNone() {
			// Only an appended firing is known to have fired: an effect
			// started without one could run again.
			return res, false, fmt.Errorf("%w: %s: the firing %T starts an effect without recording an event", ErrInvalidDecision, e.stream, m.cmd)
		}
		e.startEffect(m, decision.Effect)
		return Result[S, E]{State: def.Clone(e.state), Version: e.version}, false, nil
	}
	if len(decision.Timers) > 0 && def.OnTimer == nil {
		return res, false, fmt.Errorf("%w: %s: %T arms timers, but the definition has no OnTimer", ErrInvalidDecision, e.stream, m.cmd)
	}
	// The next state is built in a field of the entity, not a local: a
	// local whose address reaches Apply would be an allocation per command.
	e.next = def.Clone(e.state)
	deferred := false
	defer func() {
		if !deferred {
			e.clearNext()
		}
	}()
	if err := safeApply(def.Apply, &e.next, decision.Events); err != nil {
		e.dirty = true
		return res, false, fmt.Errorf("aggregate %s: apply: %w", e.stream, err)
	}
	data, err := e.encode(decision.Events, m, run)
	if err != nil {
		e.dirty = true // Apply ran on a copy that may share memory with the state
		return res, false, err
	}
	var timers []persistence.TimerChange
	if len(decision.Timers) > 0 || m.timer != nil {
		if timers, err = e.timerChanges(m, decision.Timers, e.version+int64(len(data))); err != nil {
			e.dirty = true
			return res, false, err
		}
	}
	canDefer := e.h.rt.async != nil && (timers == nil || e.h.rt.asyncTimers != nil)
	if mayDefer && canDefer && m.reply != nil && decision.Effect.IsNone() && !e.snapshotDue(e.version+int64(len(data))) {
		if err := e.deferAppend(c, m, run, decision.Events, data, timers); err != nil {
			return e.appendFailed(c, m, err)
		}
		deferred = true
		return res, false, errDeferred
	}
	var appended persistence.AppendResult
	if timers != nil {
		appended, err = e.h.rt.timers.AppendWithTimers(c, e.stream, persistence.ExpectedVersion(e.version), data, timers)
	} else {
		appended, err = e.h.rt.store.Append(c, e.stream, persistence.ExpectedVersion(e.version), data...)
	}
	if err != nil {
		return e.appendFailed(c, m, err)
	}
	e.appended(m, appended, len(data))
	for _, due := range armedDues(timers) {
		e.h.sched.armed(due)
	}
	e.stored = timers
	e.startEffect(m, decision.Effect)
	e.maybeSnapshot()
	return Result[S, E]{State: def.Clone(e.state), Events: decision.Events, Version: appended.Version, Position: appended.Position}, false, nil
}

// appended takes in the events of m, now stored: the next state becomes
// the state.
func (e *entity[S, C, E, Env]) appended(m *envelope[S, C, E], appended persistence.AppendResult, count int) {
	e.state, e.version = e.next, appended.Version
	if m.commandID != "" {
		e.dedup.add(commandRecord{ID: m.commandID, Version: appended.Version, Position: appended.Position, Count: count})
	}
	e.failures = 0
}

// appendFailed handles a failed append of m's events. retry reports a
// concurrency conflict after which the state was brought up to date.
func (e *entity[S, C, E, Env]) appendFailed(ctx context.Context, m *envelope[S, C, E], err error) (res Result[S, E], retry bool, _ error) {
	switch {
	case errors.Is(err, persistence.ErrConcurrency):
		// Another writer got there first: catch up, then decide again.
		e.dirty = true
		if err := e.rehydrate(ctx); err != nil {
			return res, false, e.storeFailed(err)
		}
		return res, true, nil
	case errors.Is(err, persistence.ErrDuplicateEvent):
		// This command's events are stored already: another activation, or
		// an earlier attempt whose outcome was unknown, handled it.
		e.dirty = true
		if err := e.rehydrate(ctx); err != nil {
			return res, false, e.storeFailed(err)
		}
		if rec, ok := e.dedup.get(m.commandID); ok && m.commandID != "" {
			res, err := e.duplicate(ctx, rec)
			return res, false, err
		}
		return res, false, fmt.Errorf("aggregate %s: command id %q was used before, beyond the dedup window: %w", e.stream, m.commandID, err)
	case persistence.FaultOf(err) == persistence.FaultInput:
		// The store refused the events as they stand, before writing
		// anything: the command's fault, not an outage. No back-off.
		return res, false, e.storeFailed(err)
	default:
		e.dirty = true // the append may or may not have landed
		return res, false, e.storeFailed(err)
	}
}

// clearNext drops the scratch state, so the entity keeps no second
// reference to the state's memory.
func (e *entity[S, C, E, Env]) clearNext() {
	var zero S
	e.next = zero
}

// duplicate answers a command whose id was already handled, with the
// original events.
func (e *entity[S, C, E, Env]) duplicate(ctx context.Context, rec commandRecord) (Result[S, E], error) {
	res := Result[S, E]{State: e.h.def.Clone(e.state), Version: rec.Version, Position: rec.Position, Duplicate: true}
	stored, err := e.h.rt.store.Load(ctx, e.stream, rec.Version-int64(rec.Count)+1)
	if err != nil {
		return res, e.storeFailed(err)
	}
	for _, r := range stored[:min(rec.Count, len(stored))] {
		ev, err := e.decode(r)
		if err != nil {
			return res, err
		}
		res.Events = append(res.Events, ev)
	}
	return res, nil
}

// encode turns events into EventData with ids derived from the command
// instance and the command's metadata. The events of one command share one
// metadata map, and commands without metadata or id share one per command
// type: stores only read it (see persistence.EventStore).
func (e *entity[S, C, E, Env]) encode(events []E, m *envelope[S, C, E], run instance) ([]persistence.EventData, error) {
	out := make([]persistence.EventData, len(events))
	var md map[string]string
	if len(m.metadata) == 0 && m.commandID == "" {
		md = e.h.typeMetadata(m.cmd)
	} else {
		md = make(map[string]string, len(m.metadata)+2)
		for k, v := range m.metadata {
			md[k] = v
		}
		md[persistence.MetadataCommandType] = typeName(m.cmd)
		if m.commandID != "" {
			md[persistence.MetadataCommandID] = m.commandID
		}
	}
	for i, ev := range events {
		d, err := e.h.def.Events.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("aggregate %s: encode %T: %w", e.stream, ev, err)
		}
		d.ID = run.eventID(e.stream, i)
		d.Metadata = md
		out[i] = d
	}
	return out, nil
}

// typeName is fmt's %T of v, without fmt's allocations.
func typeName(v any) string {
	if t := reflect.TypeOf(v); t != nil {
		return t.String()
	}
	return "<nil>"
}

func (e *entity[S, C, E, Env]) decode(r persistence.RecordedEvent) (E, error) {
	ev, err := persistence.Decode[E](e.h.def.Events, r.EventData)
	if err != nil {
		return ev, fmt.Errorf("%w: %s version %d: %w", ErrCorrupt, e.stream, r.Version, err)
	}
	return ev, nil
}

// rehydrate rebuilds the state from the latest usable snapshot and the
// events after it.
func (e *entity[S, C, E, Env]) rehydrate(ctx context.Context) error {
	def := e.h.def
	var placedAt uint64
	if r := e.h.rt.remote; r != nil {
		placedAt = r.Epoch() // before reading: a change during the read reads again
	}
	state, version := def.Initial(e.id), int64(0)
	dedup := newDedupWindow(e.h.opts.DedupWindow)
	snapVersion := int64(0)
	if snaps := e.h.rt.snapshots; snaps != nil && e.h.opts.SnapshotEvery > 0 {
		snap, ok, err := snaps.LoadSnapshot(ctx, e.stream)
		if err != nil {
			return err
		}
		if ok {
			if s, records, usable := e.openSnapshot(snap); usable {
				state, version, snapVersion = s, snap.Version, snap.Version
				for _, r := range records {
					dedup.add(r)
				}
			}
		}
	}
	stored, err := e.h.rt.store.Load(ctx, e.stream, version+1)
	if errors.Is(err, persistence.ErrStreamNotFound) && version == 0 {
		err = nil
	}
	if err != nil {
		return err
	}
	for _, r := range stored {
		if r.Version != version+1 {
			return fmt.Errorf("%w: %s: version %d follows %d", ErrCorrupt, e.stream, r.Version, version)
		}
		ev, err := e.decode(r)
		if err != nil {
			return err
		}
		if err := safeApply(def.Apply, &state, []E{ev}); err != nil {
			return fmt.Errorf("%w: %s version %d: apply: %w", ErrCorrupt, e.stream, r.Version, err)
		}
		dedup.observe(r)
		version = r.Version
	}
	e.state, e.version, e.dedup, e.snapVersion, e.placedAt = state, version, dedup, snapVersion, placedAt
	e.recovered, e.dirty = true, false
	return nil
}

// openSnapshot decodes a snapshot; a snapshot of another schema version or
// one that cannot be read is ignored (logged), and the stream replayed.
func (e *entity[S, C, E, Env]) openSnapshot(snap persistence.Snapshot) (S, []commandRecord, bool) {
	var zero S
	env, err := decodeEnvelope(snap.Data)
	if err == nil {
		var state S
		var ok bool
		state, ok, err = e.h.def.Snapshots.Decode(persistence.Snapshot{StreamID: snap.StreamID, Version: snap.Version, SchemaVersion: snap.SchemaVersion, Data: env.State})
		if err == nil && ok {
			return state, env.Commands, true
		}
		if err == nil {
			return zero, nil, false // another schema version: replay, silently
		}
	}
	e.h.rt.logger.Warn("aggregate: unreadable snapshot ignored; replaying the stream", slog.String("stream", e.stream), slog.Any("error", err))
	return zero, nil, false
}

// maybeSnapshot starts a snapshot write when enough events accumulated. The
// state is encoded here, on the actor; the write runs in the background and
// never delays a reply. A failed write is logged and retried with a later
// command.
func (e *entity[S, C, E, Env]) maybeSnapshot() {
	if !e.snapshotDue(e.version) {
		return
	}
	snap, err := e.encodeSnapshot()
	if err != nil {
		e.h.rt.logger.Error("aggregate: encode snapshot", slog.String("stream", e.stream), slog.Any("error", err))
		return
	}
	e.snapping = true
	e.h.rt.spawnTask(func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.opts.CommandTimeout)
		defer cancel()
		err := e.h.rt.snapshots.SaveSnapshot(ctx, snap)
		if err != nil {
			e.h.rt.logger.Warn("aggregate: snapshot write failed; will retry", slog.String("stream", e.stream), slog.Any("error", err))
		}
		e.tell(snapshotDone{version: snap.Version, err: err})
	})
}

// snapshotDue reports whether a snapshot is to be written at version.
func (e *entity[S, C, E, Env]) snapshotDue(version int64) bool {
	every := e.h.opts.SnapshotEvery
	return every > 0 && !e.snapping && e.h.rt.snapshots != nil && version-e.snapVersion >= int64(every)
}

func (e *entity[S, C, E, Env]) encodeSnapshot() (persistence.Snapshot, error) {
	snap, err := e.h.def.Snapshots.Encode(e.stream, e.version, e.h.def.Clone(e.state))
	if err != nil {
		return snap, err
	}
	snap.Data, err = encodeEnvelope(snap.Data, e.dedup)
	return snap, err
}

// evictableAgain tells the manager that an aggregate that refused
// eviction, busy then, has no work in flight any more (see the handshake
// in manager.go).
func (e *entity[S, C, E, Env]) evictableAgain(ctx protoactor.Context) {
	if e.self == nil || e.stopped || !e.refusedEviction.Load() || e.busy() {
		return
	}
	e.refusedEviction.Store(false)
	ctx.Send(ctx.Parent(), evictable{pid: e.self})
}

// busy reports work in flight that a stop would cut short: effects, a
// snapshot write, or an append.
func (e *entity[S, C, E, Env]) busy() bool {
	return e.runner.InFlight() > 0 || e.snapping || e.pending != nil
}

// passivate tells the manager this aggregate may stop, unless it is busy;
// the manager asks again on its next sweep (step 1 of the handshake in
// manager.go).
func (e *entity[S, C, E, Env]) passivate(ctx protoactor.Context) {
	if e.busy() {
		return
	}
	if e.h.opts.SnapshotOnPassivation && e.recovered && !e.dirty && e.version > e.snapVersion && e.h.rt.snapshots != nil {
		snap, err := e.encodeSnapshot()
		if err == nil {
			sctx, cancel := context.WithTimeout(context.Background(), e.h.opts.CommandTimeout)
			err = e.h.rt.snapshots.SaveSnapshot(sctx, snap)
			cancel()
		}
		if err != nil {
			e.h.rt.logger.Warn("aggregate: snapshot on passivation failed", slog.String("stream", e.stream), slog.Any("error", err))
		} else {
			e.snapVersion = e.version
		}
	}
	ctx.Send(ctx.Parent(), passivateOK{pid: ctx.Self(), epoch: e.epoch})
}

// stopIfIdle decides step 3 of the handshake: it reports whether the
// aggregate may stop now, and if so marks it stopped, so that effects can
// no longer post to it. The manager has closed the route, so only this
// activation's own effects and background writes could still post; the
// decision is taken holding the gate those posts take.
func (e *entity[S, C, E, Env]) stopIfIdle(req stopIfIdle) bool {
	e.gate.Lock()
	defer e.gate.Unlock()
	if e.busy() || e.route.queued.Load() != 0 || (!req.evict && e.epoch != req.epoch) {
		return false
	}
	e.stopped = true
	return true
}

// activate starts the definition's OnActivate effect for the freshly
// rebuilt state.
func (e *entity[S, C, E, Env]) activate(m *envelope[S, C, E]) {
	if e.h.def.OnActivate == nil {
		return
	}
	effect, err := safeActivate(e.h.def.OnActivate, e.h.def.Clone(e.state), e.h.def.Env)
	if err != nil {
		e.h.rt.logger.Error("aggregate: OnActivate panicked", slog.String("stream", e.stream), slog.Any("error", err))
		return
	}
	e.startEffect(&envelope[S, C, E]{ctx: context.WithoutCancel(m.ctx), id: e.id}, effect)
}

func safeActivate[S, C, Env any](f func(S, Env) composable.Effect[C], state S, env Env) (effect composable.Effect[C], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &composable.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return f(state, env), nil
}

func (e *entity[S, C, E, Env]) startEffect(m *envelope[S, C, E], effect composable.Effect[C]) {
	if effect.IsNone() {
		return
	}
	e.runner.Start(m.ctx, effect, func(err error) {
		if err != nil {
			e.h.rt.logger.Error("aggregate: effect panicked", slog.String("stream", e.stream), slog.Any("error", err))
		}
		if e.refusedEviction.Load() {
			e.tell(drained{}) // it may be evictable now
		}
	})
}

// storeFailed records a store failure and sets the back-off window —
// unless the failure is not the store's (persistence.FaultOf): the data's
// is returned as it is, with no back-off (a retry cannot cure it), and
// the caller's input is an invalid decision.
func (e *entity[S, C, E, Env]) storeFailed(err error) error {
	switch persistence.FaultOf(err) {
	case persistence.FaultData:
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: %s: %w", ErrCorrupt, e.stream, err)
		}
		return err
	case persistence.FaultInput:
		return fmt.Errorf("%w: %s: %w", ErrInvalidDecision, e.stream, err)
	}
	e.failures++
	backoff := e.h.opts.MinBackoff << min(e.failures-1, 20)
	e.retryAt = e.h.rt.clock.Now().Add(min(backoff, e.h.opts.MaxBackoff))
	e.lastErr = err
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, e.stream, err)
}

func safeHandle[S, C, E, Env any](handle func(S, C, Env) (Decision[C, E], error), state S, cmd C, env Env) (d Decision[C, E], err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &composable.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return handle(state, cmd, env)
}

func safeApply[S, E any](apply func(*S, E), state *S, events []E) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &composable.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	for _, ev := range events {
		apply(state, ev)
	}
	return nil
}

package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// Durable timers. A timer is a row in the store (persistence.TimerStore),
// armed and cancelled by a command's decision in the transaction of its
// events, so the rows always agree with the aggregates' states. One
// scheduler per aggregate type — per lease, so one across the processes
// that share the store — reads the rows earliest first, sleeps until the
// next is due, and fires each due one by sending its aggregate the
// command Definition.OnTimer makes of it, with the arming's fire id as
// command id:
//
//   - the firing's events remove the row in their transaction (a
//     conditional cancel, so a timer re-armed meanwhile stays);
//   - a firing that appends nothing (the aggregate ignored it) is removed
//     by the scheduler afterwards, again only if it is still that arming;
//   - a firing sent twice — by a scheduler that died after sending, or two
//     overlapping ones — is handled once: the aggregate deduplicates
//     command ids, and the second finds the row gone or the id handled.
//
// So each arming fires once, whatever was evicted, passivated, restarted
// or killed, and an aggregate waiting for a timer need not stay in memory.

// fireIDFor names one arming of a timer: the aggregate's stream, the
// timer's name and the stream version of the command that armed it.
func fireIDFor(stream, name string, version int64) string {
	return fmt.Sprintf("timer:%s:%s:%d", stream, name, version)
}

// armedVersion returns the stream version of the command that armed the
// timer of fireID (see fireIDFor), or 0 for an id it did not make.
func armedVersion(fireID string) int64 {
	i := strings.LastIndexByte(fireID, ':')
	if !strings.HasPrefix(fireID, "timer:") || i < 0 {
		return 0
	}
	v, err := strconv.ParseInt(fireID[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// timerChanges turns a decision's timers into the store's changes, for a
// command whose events take the stream to version. A firing command first
// removes its own timer, if it is still that arming.
func (e *entity[S, C, E, Env]) timerChanges(m *envelope[S, C, E], timers []Timer, version int64) ([]persistence.TimerChange, error) {
	var out []persistence.TimerChange
	if m.timer != nil {
		out = append(out, persistence.TimerChange{Timer: *m.timer, Cancel: true})
	}
	for _, t := range timers {
		c := persistence.TimerChange{
			Timer:  persistence.Timer{Owner: e.h.def.Type, ID: e.id, Name: t.Name},
			Cancel: t.Cancel,
		}
		if !t.Cancel {
			c.Timer.Due = t.Due
			c.Timer.FireID = fireIDFor(e.stream, t.Name, version)
		}
		out = append(out, c)
	}
	if err := persistence.ValidateTimers(out); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidDecision, e.stream, err)
	}
	return out, nil
}

// armedDues returns the due times of the timers changes arm.
func armedDues(changes []persistence.TimerChange) []time.Time {
	var out []time.Time
	for _, c := range changes {
		if !c.Cancel {
			out = append(out, c.Timer.Due)
		}
	}
	return out
}

// scheduler fires the durable timers of one aggregate type while it holds
// the type's lease. Its goroutine is the runtime's; everything but armed
// runs on it.
type scheduler struct {
	owner                  string
	store                  persistence.TimerStore
	lease                  persistence.Lease
	clock                  composable.Clock
	logger                 *slog.Logger
	fire                   func(ctx context.Context, t persistence.Timer) (appended bool, err error)
	batch                  int // timers read at once
	width                  int // firings in flight at most
	poll                   time.Duration
	minBackoff, maxBackoff time.Duration
	observer               Observer

	// wake is signalled when this runtime arms a timer due before until,
	// the time the scheduler sleeps until (MinInt64: it is awake and will
	// read the table again; MaxInt64: it is reading, every arm counts).
	wake  chan struct{}
	until atomic.Int64

	// failed holds the firings that failed, with when to try them again.
	failed map[string]retry // by fire id
}

type retry struct {
	at       time.Time
	failures int
}

func newScheduler[S, C, E, Env any](h *host[S, C, E, Env]) *scheduler {
	s := &scheduler{
		owner: h.def.Type, store: h.rt.timers, lease: h.rt.lease, clock: h.rt.clock, logger: h.rt.logger,
		batch: h.opts.TimerBatch, width: min(h.opts.TimerBatch, h.opts.MaxLive), poll: h.opts.TimerPoll,
		minBackoff: h.opts.MinBackoff, maxBackoff: h.opts.MaxBackoff,
		wake: make(chan struct{}, 1), failed: map[string]retry{}, observer: h.rt.observer,
	}
	s.fire = func(ctx context.Context, t persistence.Timer) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, h.opts.CommandTimeout)
		defer cancel()
		cmd, err := safeOnTimer(h.def.OnTimer, t)
		if err != nil {
			return false, err
		}
		m := &envelope[S, C, E]{id: t.ID, cmd: cmd, commandID: t.FireID, timer: &t}
		var res Result[S, E]
		if r := h.remoteTo(t.ID); r != nil { // in a cluster, the owner fires it
			res, err = h.sendRemote(ctx, r, m)
		} else {
			res, err = h.request(ctx, m)
		}
		// A duplicate's events are the original firing's: its transaction
		// removed the timer too.
		return len(res.Events) > 0, err
	}
	s.until.Store(math.MaxInt64)
	return s
}

// safeOnTimer makes a timer's firing command; a panic in OnTimer is an
// invalid decision.
func safeOnTimer[C any](onTimer func(string, time.Time) C, t persistence.Timer) (cmd C, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: OnTimer(%q): %w", ErrInvalidDecision, t.Name, &composable.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	return onTimer(t.Name, t.Due), nil
}

// armed tells the scheduler that a timer due at due was armed.
func (s *scheduler) armed(due time.Time) {
	if due.UnixNano() < s.until.Load() {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run holds the lease and fires timers until ctx ends; a lost lease is
// sought again.
func (s *scheduler) run(ctx context.Context) {
	name := "timers:" + s.owner
	failures := 0
	for ctx.Err() == nil {
		lost, release, err := s.lease.Acquire(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				failures++
				s.logger.Warn("aggregate: timer scheduler cannot take its lease; retrying", slog.String("type", s.owner), slog.Any("error", err))
				s.sleep(ctx, nil, s.backoff(failures))
			}
			continue
		}
		failures = 0
		s.hold(ctx, lost)
		release()
	}
}

// hold fires due timers and sleeps until the next is due, while the lease
// holds.
func (s *scheduler) hold(ctx context.Context, lost <-chan struct{}) {
	failures := 0
	for {
		s.until.Store(math.MaxInt64)
		next, err := s.fireDue(ctx, lost)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-lost:
			return
		default:
		}
		now := s.clock.Now()
		wakeAt := now.Add(s.poll)
		if err != nil {
			failures++
			s.logger.Warn("aggregate: timer scheduler cannot read timers; retrying", slog.String("type", s.owner), slog.Any("error", err))
			wakeAt = now.Add(s.backoff(failures))
		} else {
			failures = 0
			if !next.IsZero() && next.Before(wakeAt) {
				wakeAt = next
			}
		}
		s.until.Store(wakeAt.UnixNano())
		if !s.sleepUntil(ctx, lost, wakeAt) {
			return
		}
	}
}

// fireDue fires every due timer and returns when the next one is due
// (zero: none is pending, or the read failed).
//
// It reads the table in passes. A pass pages through the due timers by
// keyset — each read starts after the last row read — so it reads each
// row once, however many firings are in flight; it ends at the first
// timer not yet due. Up to width firings are in flight at once, each
// dispatched as soon as one ends, also while the next page is read. A
// timer armed behind the cursor during a pass, and a failed firing whose
// back-off ends, are found by the next pass, which starts from the
// beginning once every firing of this one has ended. A pass that finds
// nothing to fire ends the call.
func (s *scheduler) fireDue(ctx context.Context, lost <-chan struct{}) (time.Time, error) {
	f := s.newFiring(ctx)
	defer f.stop()
	for {
		dispatched, next, err := s.pass(ctx, lost, f)
		if err != nil || ctx.Err() != nil {
			return time.Time{}, err
		}
		f.wait(0)
		if !dispatched || isLost(lost) {
			return next, nil
		}
	}
}

// pass reads the due timers from the beginning and fires them; it reports
// whether it dispatched any firing, and when the next timer not fired is
// due.
func (s *scheduler) pass(ctx context.Context, lost <-chan struct{}, f *firing) (dispatched bool, next time.Time, err error) {
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	// Retry records of firings no longer pending — fired or cancelled
	// since — go once a whole pass has not seen them.
	stale := make(map[string]bool, len(s.failed))
	for id := range s.failed {
		stale[id] = true
	}
	var after persistence.Timer
	for {
		timers, err := s.store.Timers(ctx, s.owner, after, s.batch)
		if err != nil {
			return dispatched, time.Time{}, err
		}
		now := s.clock.Now()
		for _, t := range timers {
			delete(stale, t.FireID)
			if t.Due.After(now) {
				// t is not due (or a mark, which never fires and comes
				// last): so are the rest.
				if !t.Due.Equal(persistence.Never) {
					later(t.Due)
				}
				for id := range stale {
					delete(s.failed, id)
				}
				return dispatched, next, nil
			}
			if r, failed := s.failed[t.FireID]; failed && r.at.After(now) {
				later(r.at) // in back-off
				continue
			}
			f.start(t)
			dispatched = true
		}
		if len(timers) < s.batch {
			for id := range stale {
				delete(s.failed, id)
			}
			return dispatched, next, nil
		}
		if isLost(lost) || ctx.Err() != nil {
			return dispatched, next, ctx.Err()
		}
		after = timers[len(timers)-1]
	}
}

// firing runs the firings of one fireDue call on workers that live as
// long as the call: a firing runs the aggregate's command on its
// goroutine, and a goroutine per firing would grow its stack anew for
// every one.
type firing struct {
	s        *scheduler
	ctx      context.Context
	inflight int // firings started and not yet settled
	done     chan fired
	work     chan persistence.Timer
}

func (s *scheduler) newFiring(ctx context.Context) *firing {
	return &firing{s: s, ctx: ctx, done: make(chan fired, s.width), work: make(chan persistence.Timer)}
}

// start fires t once fewer than width firings are in flight.
func (f *firing) start(t persistence.Timer) {
	f.wait(f.s.width - 1)
	f.inflight++
	select {
	case f.work <- t: // an idle worker takes it
		return
	default:
	}
	go func() {
		for ok := true; ok; t, ok = <-f.work {
			f.done <- fired{t, f.s.fireOne(f.ctx, t)}
		}
	}()
}

// wait settles the outcomes of firings until at most n are in flight.
func (f *firing) wait(n int) {
	for f.inflight > n {
		r := <-f.done
		f.inflight--
		f.s.settle(f.ctx, r)
	}
}

// stop waits for the firings in flight and ends the workers.
func (f *firing) stop() {
	f.wait(0)
	close(f.work)
}

func isLost(lost <-chan struct{}) bool {
	select {
	case <-lost:
		return true
	default:
		return false
	}
}

// fired is the outcome of one firing.
type fired struct {
	timer persistence.Timer
	err   error
}

// settle records the outcome of a firing: a failed one is tried again
// after a back-off.
func (s *scheduler) settle(ctx context.Context, f fired) {
	t := f.timer
	if s.observer != nil {
		s.observer.TimerFired(TimerFiring{Type: t.Owner, ID: t.ID, Name: t.Name, Due: t.Due, Err: f.err})
	}
	if f.err == nil {
		delete(s.failed, t.FireID)
		return
	}
	r := s.failed[t.FireID]
	r.failures++
	r.at = s.clock.Now().Add(s.backoff(r.failures))
	s.failed[t.FireID] = r
	if ctx.Err() == nil {
		s.logger.Warn("aggregate: timer firing failed; will retry", slog.String("type", s.owner), slog.String("id", persistence.Quote(t.ID)),
			slog.String("timer", persistence.Quote(t.Name)), slog.Int("failures", r.failures), slog.Any("error", f.err))
	}
}

// fireOne sends one firing, then removes the row if the aggregate took the
// firing without appending — the appending firings removed it in their
// transaction. A rejection or an invalid decision is final: the firing
// would fail again, so it is logged and the timer dropped. Other failures
// (the store, a panic, overload) are retried.
func (s *scheduler) fireOne(ctx context.Context, t persistence.Timer) error {
	appended, err := s.fire(ctx, t)
	switch {
	case errors.Is(err, ErrRejected):
		s.logger.Warn("aggregate: timer firing rejected; the timer is dropped", slog.String("type", s.owner), slog.String("id", persistence.Quote(t.ID)),
			slog.String("timer", persistence.Quote(t.Name)), slog.Any("error", err))
		err = nil
	case errors.Is(err, ErrInvalidDecision) || (err != nil && persistence.FaultOf(err) == persistence.FaultInput):
		// An invalid decision, or input no store takes (an id stored
		// before the limits, say): it would fail again.
		s.logger.Error("aggregate: timer firing cannot be carried out; the timer is dropped", slog.String("type", s.owner), slog.String("id", persistence.Quote(t.ID)),
			slog.String("timer", persistence.Quote(t.Name)), slog.Any("error", err))
		err = nil
	}
	if err != nil || appended {
		return err
	}
	return s.store.DeleteTimer(ctx, t)
}

func (s *scheduler) backoff(failures int) time.Duration {
	return min(s.minBackoff<<min(failures-1, 20), s.maxBackoff)
}

// sleepUntil waits until the clock reads t, a timer is armed before t,
// the lease is lost or ctx ends; it reports whether to go on.
func (s *scheduler) sleepUntil(ctx context.Context, lost <-chan struct{}, t time.Time) bool {
	var fired <-chan time.Time
	var stop func()
	if dc, ok := s.clock.(composable.DeadlineClock); ok {
		fired, stop = dc.NewTimerAt(t)
	} else if tc, ok := s.clock.(composable.TimerClock); ok {
		fired, stop = tc.NewTimer(t.Sub(s.clock.Now()))
	} else {
		fired, stop = s.clock.After(t.Sub(s.clock.Now())), func() {}
	}
	defer stop()
	select {
	case <-fired:
	case <-s.wake:
	case <-lost:
		return false
	case <-ctx.Done():
		return false
	}
	return true
}

// sleep waits for d on the clock, or until ctx ends or lost is closed.
func (s *scheduler) sleep(ctx context.Context, lost <-chan struct{}, d time.Duration) {
	s.sleepUntil(ctx, lost, s.clock.Now().Add(d))
}

// soleLease is the lease of a runtime that shares its store with no other
// process: always granted at once, never lost.
type soleLease struct{}

func (soleLease) Acquire(ctx context.Context, _ string) (<-chan struct{}, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return nil, func() {}, nil
}

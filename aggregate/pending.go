package aggregate

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// asyncAppender is an event store that can queue an append and answer it
// through a callback, as the PostgreSQL store does. With one, an aggregate
// actor does not wait for its appends: the store's goroutine answers the
// caller, and the actor's goroutine is free for other aggregates.
//
// AppendAsync either returns an error (the append was not queued, done is
// never called) or calls done exactly once, possibly long after ctx ended.
// done must not block.
type asyncAppender interface {
	AppendAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, done func(persistence.AppendResult, error)) error
}

// asyncTimerAppender is an asyncAppender for appends with durable timer
// changes (see persistence.TimerStore), as the PostgreSQL store is.
type asyncTimerAppender interface {
	AppendWithTimersAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange, done func(persistence.AppendResult, error)) error
}

// errDeferred reports that a command's outcome is left to its pending
// append: nobody must answer it but the append's callback or settle.
var errDeferred = errors.New("aggregate: answered when the append completes")

// settlePending asks an entity to take in its pending append's outcome.
type settlePending struct{}

func (settlePending) IgnoreDeadLetterLogging() {}

// pendingAppend is a command whose events are being appended by a store
// that answers through a callback. complete runs on the store's goroutine
// (or the watchdog's, when the command overruns) and settle on the
// actor's; the wake token orders them: everything complete wrote is
// visible to settle.
type pendingAppend[S, C, E any] struct {
	rt      *Runtime
	m       *envelope[S, C, E]
	run     instance
	c       *commandContext
	count   int          // events appended
	result  Result[S, E] // the reply on success, but for version and position
	wake    chan struct{}
	notify  func()             // asks the actor to settle, when the append failed
	hook    overrunHook        // the command context's, set to p
	sched   *scheduler         // told of armed, once they are stored
	armed   []time.Time        // due times of the timers the append arms
	observe func(Result[S, E]) // reports the success to the runtime's observer, if any

	done     atomic.Bool
	appended persistence.AppendResult
	err      error
}

// deferAppend queues the append of a command's events with the store's
// callback and makes it the entity's pending append. The command's context
// c stays armed until settle: if the store has not answered when it
// overruns, the command fails with its deadline.
func (e *entity[S, C, E, Env]) deferAppend(c *commandContext, m *envelope[S, C, E], run instance, events []E, data []persistence.EventData, timers []persistence.TimerChange) error {
	p := &pendingAppend[S, C, E]{rt: e.h.rt, m: m, run: run, c: c, count: len(data),
		wake: e.wake, notify: e.settleLater, result: Result[S, E]{State: e.h.def.Clone(e.next), Events: events}}
	p.hook.listener = p
	c.overrun.Store(&p.hook)
	if e.h.rt.observer != nil { // a closure per command only when observed
		p.observe = func(res Result[S, E]) { e.h.observeHandled(m, res, nil, timers) }
	}
	var err error
	if timers == nil {
		err = e.h.rt.async.AppendAsync(c, e.stream, persistence.ExpectedVersion(e.version), data, p.complete)
	} else {
		p.sched, p.armed = e.h.sched, armedDues(timers)
		err = e.h.rt.asyncTimers.AppendWithTimersAsync(c, e.stream, persistence.ExpectedVersion(e.version), data, timers, p.complete)
	}
	if err != nil {
		c.overrun.Store(nil)
		if !p.done.CompareAndSwap(false, true) {
			// The command overran while the store refused it, and the
			// watchdog completed p: take back the wake token it left,
			// which no pending append would otherwise consume.
			<-e.wake
		}
		return err
	}
	e.pending = p
	return nil
}

// overrun completes p with the command's deadline.
func (p *pendingAppend[S, C, E]) overrun() {
	p.complete(persistence.AppendResult{}, context.DeadlineExceeded)
}

// complete takes the append's outcome, once: the first of the store and
// the watchdog wins. On success it answers the caller right away; a
// failure is left to the actor, which may retry.
func (p *pendingAppend[S, C, E]) complete(appended persistence.AppendResult, err error) {
	if !p.done.CompareAndSwap(false, true) {
		return
	}
	p.appended, p.err = appended, err
	if err != nil {
		p.wake <- struct{}{}
		p.notify()
		return
	}
	for _, due := range p.armed {
		p.sched.armed(due)
	}
	res := p.result
	res.Version, res.Position = appended.Version, appended.Position
	if p.observe != nil {
		p.observe(res)
	}
	replies, slots := p.m.reply, p.m.slots
	p.wake <- struct{}{} // after this, p belongs to the actor again
	if slots != nil {
		slots.free()
		defer p.rt.inflight.Done()
	}
	replies <- reply[S, E]{res: res}
}

// settle takes in the outcome of the pending append, waiting for it if
// need be. Every message but the first runs after it, so the actor sees
// its own writes. A failed append is handled as in attempt, and the
// command retried here if it conflicted; its caller is answered here.
func (e *entity[S, C, E, Env]) settle() {
	if e.pending != nil {
		<-e.wake
		e.settled()
	}
}

// trySettle settles the pending append if it has completed, and reports
// whether none is pending any more.
func (e *entity[S, C, E, Env]) trySettle() bool {
	if e.pending == nil {
		return true
	}
	select {
	case <-e.wake:
		e.settled()
		return true
	default:
		return false
	}
}

// settled takes in the outcome of the pending append, which completed: its
// wake token was taken.
func (e *entity[S, C, E, Env]) settled() {
	p := e.pending
	e.pending = nil
	p.c.overrun.Store(nil)
	if p.err == nil {
		e.appended(p.m, p.appended, p.count)
		e.clearNext()
		e.watchdog.stop(p.c)
		return
	}
	e.clearNext()
	res, err := e.finish(p)
	e.watchdog.stop(p.c)
	e.answer(p.m, res, err)
}

// finish completes a command whose deferred append failed.
func (e *entity[S, C, E, Env]) finish(p *pendingAppend[S, C, E]) (res Result[S, E], err error) {
	defer func() {
		if v := recover(); v != nil { // a bug outside user code; never kill the actor
			e.dirty = true
			err = fmt.Errorf("aggregate %s: %w", e.stream, &composable.PanicError{Value: v, Stack: debug.Stack()})
		}
	}()
	res, retry, err := e.appendFailed(p.c, p.m, p.err)
	if !retry {
		return res, err
	}
	return e.attempts(p.c, p.m, p.run, 1)
}

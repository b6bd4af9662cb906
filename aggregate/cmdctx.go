package aggregate

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// commandContext is the context of one command's store calls. It carries
// the caller's values but not its cancellation — a caller that gives up
// must not abort an append half-way — and the command's deadline. It ends
// (Done closes) when the deadline passes or the command is over.
//
// It does what context.WithTimeout(context.WithoutCancel(ctx), d) does,
// with two small allocations instead of a context chain and a timer per
// command (three if someone asks for Done): the timer is the entity's, re-armed for each command. It
// implements AfterFunc, so context.AfterFunc and contexts derived from it
// (a driver watching a query, say) need no goroutine to watch it.
type commandContext struct {
	values   context.Context // context.WithoutCancel of the caller's: its cause stays out too
	deadline time.Time
	done     atomic.Pointer[chan struct{}] // made by the first Done, closed when c ends
	state    atomic.Int32                  // running, or why it ended

	mu     sync.Mutex   // held to make or close done, and for afters
	afters []*afterFunc // registered by AfterFunc, run when c ends

	overrun atomic.Pointer[overrunHook] // told when c overruns, if set
}

// overrunHook is told when a command's context overruns. A pointer to one
// that lives inside the listener costs no allocation.
type overrunHook struct{ listener interface{ overrun() } }

type afterFunc struct {
	f       func()
	settled bool // started or stopped
}

const (
	running int32 = iota
	overran
	over
)

func (c *commandContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *commandContext) Value(key any) any           { return c.values.Value(key) }

// Done returns a channel that is closed when c ends. It is made on first
// use: most commands end without anyone asking.
func (c *commandContext) Done() <-chan struct{} {
	if d := c.done.Load(); d != nil {
		return *d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.done.Load(); d != nil {
		return *d
	}
	d := make(chan struct{})
	if c.state.Load() != running {
		close(d) // end has run, or will find it closed
	}
	c.done.Store(&d)
	return d
}

// Err is nil until Done is closed, as the Context contract requires: end
// records the reason just before it closes Done, so Err waits for that.
func (c *commandContext) Err() error {
	if c.state.Load() == running {
		return nil
	}
	<-c.Done()
	if c.state.Load() == overran {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// AfterFunc arranges to call f in its own goroutine once c ends, with
// context.AfterFunc's semantics: stop reports whether it kept f from
// running. The context package calls it (through its unexported
// afterFuncer interface) for context.AfterFunc and for contexts derived
// from c, which then need no goroutine to watch c.
func (c *commandContext) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.state.Load() != running {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if a.settled {
			return false
		}
		a.settled = true
		// Drop it now: a driver registers one per query, and a command may
		// run many before it ends.
		if i := slices.Index(c.afters, a); i >= 0 {
			c.afters = slices.Delete(c.afters, i, i+1)
		}
		return true
	}
}

// end ends c for reason, once.
func (c *commandContext) end(reason int32) {
	if !c.state.CompareAndSwap(running, reason) {
		return
	}
	c.mu.Lock()
	if d := c.done.Load(); d != nil {
		select {
		case <-*d: // Done made it after the state changed, closed
		default:
			close(*d)
		}
	}
	afters := c.afters
	c.afters = nil
	for _, a := range afters {
		if !a.settled {
			a.settled = true
			go a.f()
		}
	}
	c.mu.Unlock()
}

// watchdog ends the running command's context when it overruns. Only the
// entity's goroutine calls start and stop; the timer's goroutine calls
// fire.
//
// The timer is not re-armed for every command. While it is armed it fires
// at the deadline of some earlier command, never later than the current
// one's; a firing that finds the current command's deadline still ahead
// re-arms it for that deadline. So a busy aggregate touches the timer once
// per CommandTimeout instead of once per command.
type watchdog struct {
	timer   *time.Timer
	current atomic.Pointer[commandContext]
	armed   atomic.Bool   // the timer will fire
	closed  atomic.Bool   // for good: fire re-arms nothing
	timeout time.Duration // of the last start; only start uses it
}

// start returns the context of a command that must end within timeout.
func (w *watchdog) start(values context.Context, timeout time.Duration) *commandContext {
	c := &commandContext{values: context.WithoutCancel(values), deadline: time.Now().Add(timeout)}
	w.current.Store(c)
	// An armed timer fires by the deadline of every command since it was
	// armed; it does by this one's too unless this timeout is shorter.
	if w.armed.CompareAndSwap(false, true) || timeout < w.timeout {
		if w.timer == nil {
			w.timer = time.AfterFunc(timeout, w.fire)
		} else {
			w.timer.Reset(timeout)
		}
	}
	w.timeout = timeout
	return c
}

// stop ends c, the command being over. The timer stays armed for the
// next command.
func (w *watchdog) stop(c *commandContext) {
	w.current.Store(nil)
	c.end(over)
}

// fire ends the current command if its deadline passed, and otherwise
// re-arms the timer for that deadline. With no command running, it leaves
// the timer unarmed: the next start arms it (the check after the Store
// settles a start racing this firing: one of the two arms it).
func (w *watchdog) fire() {
	c := w.current.Load()
	if c == nil {
		w.armed.Store(false)
		if w.current.Load() != nil && !w.closed.Load() && w.armed.CompareAndSwap(false, true) {
			w.timer.Reset(0) // a command started meanwhile: look again
		}
		return
	}
	if left := time.Until(c.deadline); left > 0 {
		if !w.closed.Load() {
			w.timer.Reset(left)
		}
		return
	}
	c.end(overran)
	if h := c.overrun.Load(); h != nil {
		h.listener.overrun()
	}
	// This command is over; the next start arms the timer anew, or the
	// check below does if one started meanwhile.
	w.armed.Store(false)
	if n := w.current.Load(); n != nil && n != c && !w.closed.Load() && w.armed.CompareAndSwap(false, true) {
		w.timer.Reset(0)
	}
}

// close stops the timer for good: a firing under way re-arms nothing.
func (w *watchdog) close() {
	w.closed.Store(true)
	if w.timer != nil {
		w.timer.Stop()
	}
}

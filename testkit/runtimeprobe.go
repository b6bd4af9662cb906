package testkit

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
)

// RuntimeProbe observes an aggregate runtime — and so the sagas on it —
// for integration tests of a whole running application: attach it with
// aggregate.WithObserver(probe), run the application, and expect what its
// aggregates do, in any order:
//
//	probe := testkit.NewRuntimeProbe(t)
//	rt := aggregate.NewRuntime(sys, store, aggregate.WithClock(clock), aggregate.WithObserver(probe))
//	...
//	probe.ExpectCommand("payment", "order-1", Charge{Amount: 450})
//	probe.ExpectEvent("payment", "order-1", Charged{Amount: 450})
//	clock.Advance(15 * time.Minute)
//	probe.ExpectTimerFired("saga-checkout", "order-1", "timer:reservation")
//
// A saga instance is an aggregate of type "saga-<Type>", so the commands
// it dispatches are commands the target aggregates handle (with command
// ids "saga/<Type>/<id>/<step>"), and its timers are the instance's
// durable timers ("timer:<name>"; "pending:<step>" guards its pending
// commands).
//
// Each Expect looks for the first matching observation not yet expected,
// waiting for it up to the probe's timeout (real time: the runtime's
// goroutines need a moment even under a manual clock), and consumes it:
// a handled command, each of its events and each of its timers are
// expected separately.
// Observations are matched by aggregate type, id and value
// (reflect.DeepEqual); an empty id matches any. A RuntimeProbe is safe for
// concurrent use by the runtime; drive it from one test goroutine.
type RuntimeProbe struct {
	t       testing.TB
	timeout time.Duration

	mu      sync.Mutex
	seen    []observation
	changed chan struct{} // closed and replaced on every observation
}

// observation is one thing the runtime reported. Each part of it — the
// command or firing, each event, each timer — is taken by one Expect.
type observation struct {
	handled *aggregate.Handled
	fired   *aggregate.TimerFiring
	taken   bool   // the command, or the firing
	events  []bool // taken, by index
	timers  []bool
}

// pending reports whether a part of o was not yet expected. A firing that
// failed is not: the scheduler retries it, and its success is what counts.
func (o *observation) pending() bool {
	if o.fired != nil && o.fired.Err != nil {
		return false
	}
	return !o.taken || slices.Contains(o.events, false) || slices.Contains(o.timers, false)
}

var _ aggregate.Observer = (*RuntimeProbe)(nil)

// NewRuntimeProbe returns a probe whose Expect calls wait up to 10s.
func NewRuntimeProbe(t testing.TB) *RuntimeProbe {
	return &RuntimeProbe{t: t, timeout: 10 * time.Second, changed: make(chan struct{})}
}

// Handled implements [aggregate.Observer].
func (p *RuntimeProbe) Handled(h aggregate.Handled) {
	o := observation{handled: &h, events: make([]bool, len(h.Events)), timers: make([]bool, len(h.Timers))}
	if h.Duplicate { // its events are the original's, expected with it
		for i := range o.events {
			o.events[i] = true
		}
	}
	p.add(o)
}

// TimerFired implements [aggregate.Observer].
func (p *RuntimeProbe) TimerFired(f aggregate.TimerFiring) { p.add(observation{fired: &f}) }

func (p *RuntimeProbe) add(o observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, o)
	close(p.changed)
	p.changed = make(chan struct{})
}

// ExpectCommand waits until aggregate typ/id handled cmd, successfully.
func (p *RuntimeProbe) ExpectCommand(typ, id string, cmd any) aggregate.Handled {
	p.t.Helper()
	o := p.expect(fmt.Sprintf("%s/%s to handle %#v", typ, id, cmd), func(o *observation) bool {
		h := o.handled
		if o.taken || h == nil || !p.of(h.Type, h.ID, typ, id) || h.Err != nil || !reflect.DeepEqual(h.Command, cmd) {
			return false
		}
		o.taken = true
		return true
	})
	return *o.handled
}

// ExpectCommandFailed waits until aggregate typ/id answered cmd with an
// error matching target (errors.Is; aggregate.ErrRejected for a business
// rejection).
func (p *RuntimeProbe) ExpectCommandFailed(typ, id string, cmd any, target error) aggregate.Handled {
	p.t.Helper()
	o := p.expect(fmt.Sprintf("%s/%s to fail %#v with %v", typ, id, cmd, target), func(o *observation) bool {
		h := o.handled
		if o.taken || h == nil || !p.of(h.Type, h.ID, typ, id) || !errors.Is(h.Err, target) || !reflect.DeepEqual(h.Command, cmd) {
			return false
		}
		o.taken = true
		return true
	})
	return *o.handled
}

// ExpectEvent waits until aggregate typ/id appended event.
func (p *RuntimeProbe) ExpectEvent(typ, id string, event any) aggregate.Handled {
	p.t.Helper()
	o := p.expect(fmt.Sprintf("%s/%s to append %#v", typ, id, event), func(o *observation) bool {
		h := o.handled
		if h == nil || !p.of(h.Type, h.ID, typ, id) || h.Duplicate {
			return false
		}
		for i, e := range h.Events {
			if !o.events[i] && reflect.DeepEqual(e, event) {
				o.events[i] = true
				return true
			}
		}
		return false
	})
	return *o.handled
}

// ExpectTimerArmed waits until aggregate typ/id armed the durable timer
// name, and returns its due time.
func (p *RuntimeProbe) ExpectTimerArmed(typ, id, name string) time.Time {
	p.t.Helper()
	return p.expectTimer(fmt.Sprintf("%s/%s to arm timer %q", typ, id, name), typ, id, name, false).Due
}

// ExpectTimerCancelled waits until aggregate typ/id cancelled the durable
// timer name.
func (p *RuntimeProbe) ExpectTimerCancelled(typ, id, name string) {
	p.t.Helper()
	p.expectTimer(fmt.Sprintf("%s/%s to cancel timer %q", typ, id, name), typ, id, name, true)
}

// expectTimer takes a timer change of typ/id and returns it.
func (p *RuntimeProbe) expectTimer(what, typ, id, name string, cancel bool) aggregate.Timer {
	p.t.Helper()
	var taken aggregate.Timer
	p.expect(what, func(o *observation) bool {
		h := o.handled
		if h == nil || !p.of(h.Type, h.ID, typ, id) || h.Err != nil {
			return false
		}
		for i, tm := range h.Timers {
			if !o.timers[i] && tm.Name == name && tm.Cancel == cancel {
				o.timers[i], taken = true, tm
				return true
			}
		}
		return false
	})
	return taken
}

// ExpectTimerFired waits until the durable timer name of typ/id fired and
// its aggregate took the firing.
func (p *RuntimeProbe) ExpectTimerFired(typ, id, name string) aggregate.TimerFiring {
	p.t.Helper()
	o := p.expect(fmt.Sprintf("timer %q of %s/%s to fire", name, typ, id), func(o *observation) bool {
		f := o.fired
		if o.taken || f == nil || !p.of(f.Type, f.ID, typ, id) || f.Name != name || f.Err != nil {
			return false
		}
		o.taken = true
		return true
	})
	return *o.fired
}

// ExpectNoMessage fails the test if anything of typ (any type, if empty)
// is observed, and not yet expected, within d of real time. Under a manual
// clock, call it after the clock moved: it tells that nothing more
// follows from what the test did.
func (p *RuntimeProbe) ExpectNoMessage(typ string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		p.mu.Lock()
		for _, o := range p.seen {
			if o.pending() && (typ == "" || o.typ() == typ) {
				p.mu.Unlock()
				p.t.Fatalf("testkit: unexpected %s", o)
				return
			}
		}
		changed := p.changed
		p.mu.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			return
		}
		select {
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// of reports whether an observation of gotType/gotID matches typ/id.
func (p *RuntimeProbe) of(gotType, gotID, typ, id string) bool {
	return gotType == typ && (id == "" || gotID == id)
}

// expect waits for the first observation of which take takes a part, and
// returns it; it fails the test after the timeout.
func (p *RuntimeProbe) expect(what string, take func(*observation) bool) observation {
	p.t.Helper()
	deadline := time.NewTimer(p.timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := range p.seen {
			if o := &p.seen[i]; take(o) {
				p.mu.Unlock()
				return *o
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			p.t.Fatalf("testkit: waited %v for %s; observed:\n%s", p.timeout, what, p.dump())
			return observation{}
		}
	}
}

// dump lists the observations not yet taken.
func (p *RuntimeProbe) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, o := range p.seen {
		if o.pending() {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	return b.String()
}

func (o observation) typ() string {
	if o.handled != nil {
		return o.handled.Type
	}
	return o.fired.Type
}

func (o observation) String() string {
	if h := o.handled; h != nil {
		return fmt.Sprintf("%s/%s handled %#v (events %v, timers %v, err %v)", h.Type, h.ID, h.Command, h.Events, h.Timers, h.Err)
	}
	f := o.fired
	return fmt.Sprintf("%s/%s timer %q fired (err %v)", f.Type, f.ID, f.Name, f.Err)
}

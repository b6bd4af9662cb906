package testkit

import (
	"reflect"
	"sync/atomic"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
)

// Probe is a protoactor actor for tests: it records every user message it
// receives so the test can expect them in order, reply to their senders, and
// send messages as the probe. Give its [Probe.PID] to the actor under test
// wherever it expects a peer.
//
// A Probe is driven by one test goroutine. It stops at test cleanup.
type Probe struct {
	t        TB
	sys      *protoactor.ActorSystem
	pid      *protoactor.PID
	msgs     chan envelope
	last     *protoactor.PID // sender of the last message taken
	overflow atomic.Int64    // messages dropped because msgs was full
}

type envelope struct {
	msg    any
	sender *protoactor.PID
}

// probeCapacity is how many unread messages a Probe holds.
const probeCapacity = 1024

// NewProbe spawns a probe on sys. It holds up to 1024 unread messages; more
// fail the test (at the next expectation or at cleanup) instead of blocking
// the probe's mailbox.
func NewProbe(t TB, sys *protoactor.ActorSystem) *Probe {
	t.Helper()
	p := &Probe{t: t, sys: sys, msgs: make(chan envelope, probeCapacity)}
	p.pid = sys.Root.SpawnPrefix(protoactor.PropsFromFunc(func(c protoactor.Context) {
		switch c.Message().(type) {
		case protoactor.SystemMessage, protoactor.AutoReceiveMessage:
			return
		}
		select {
		case p.msgs <- envelope{msg: c.Message(), sender: c.Sender()}:
		default:
			p.overflow.Add(1)
		}
	}), "probe-")
	t.Cleanup(func() {
		// Poison, not Stop: the probe takes every queued message first, so
		// the overflow count is final.
		_ = sys.Root.PoisonFuture(p.pid).Wait()
		p.checkOverflow()
	})
	return p
}

func (p *Probe) checkOverflow() {
	p.t.Helper()
	if n := p.overflow.Swap(0); n > 0 {
		p.t.Errorf("testkit: Probe dropped %d message(s): more than %d unread", n, probeCapacity)
	}
}

// PID returns the probe's address.
func (p *Probe) PID() *protoactor.PID { return p.pid }

// Send sends msg to pid with the probe as sender, so replies come back to
// the probe.
func (p *Probe) Send(pid *protoactor.PID, msg any) {
	p.sys.Root.RequestWithCustomSender(pid, msg, p.pid)
}

// Reply sends msg to the sender of the last message the probe took with
// [ExpectMsg]. It fails the test if that message had no sender.
func (p *Probe) Reply(msg any) {
	p.t.Helper()
	if p.last == nil {
		p.t.Errorf("testkit: Probe.Reply(%T): the last message had no sender", msg)
		return
	}
	p.sys.Root.Send(p.last, msg)
}

// ExpectNoMsg fails the test if a message arrives within d. It necessarily
// waits the whole of d, so keep d short.
func (p *Probe) ExpectNoMsg(d time.Duration) {
	p.t.Helper()
	p.checkOverflow()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case e := <-p.msgs:
		p.t.Errorf("testkit: Probe expected no message, got %T: %v", e.msg, e.msg)
	case <-timer.C:
	}
}

// ExpectMsg waits up to timeout for the probe's next message and checks that
// it is a T. It returns the message and true, or fails the test and returns
// false when nothing arrives in time or the message has another type.
func ExpectMsg[T any](p *Probe, timeout time.Duration) (T, bool) {
	p.t.Helper()
	p.checkOverflow()
	var zero T
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case e := <-p.msgs:
		p.last = e.sender
		m, ok := e.msg.(T)
		if !ok {
			p.t.Errorf("testkit: Probe expected %s, got %T: %v", typeName[T](), e.msg, e.msg)
			return zero, false
		}
		return m, true
	case <-timer.C:
		p.t.Errorf("testkit: Probe expected %s within %v, got nothing", typeName[T](), timeout)
		return zero, false
	}
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

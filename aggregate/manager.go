package aggregate

import (
	"container/list"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
)

// # Stopping an aggregate: the handshake
//
// An aggregate stops only when it has no work: passivation (idle for
// IdleTimeout) and eviction (over MaxLive) are both a handshake between the
// manager and the child, and neither ever cancels an effect that a handled
// command started, nor drops a message the child was sent. The steps:
//
//  1. Passivation: the sweep posts passivateCheck to each idle child (unless
//     one is still in its mailbox). A child
//     that is busy — effects in flight, a snapshot or an append being
//     written — ignores it (the next sweep asks again); an idle one answers
//     passivateOK with its epoch, the number of commands it has handled.
//     Eviction skips this step: the manager picks the least recently used
//     child itself.
//  2. The manager marks the child stopping and closes its route: from then
//     on commands for the id wait in the child's buffer in the manager, and
//     no direct post is in progress (closeRoute). It posts stopIfIdle to
//     the child — behind everything already in its mailbox.
//  3. The child, on stopIfIdle, stops if it is still idle: no effect in
//     flight, no snapshot or append pending, no message queued behind
//     stopIfIdle (effects post to the child directly, not through the
//     route), and — for a passivation — no command handled since its
//     passivateOK. It decides holding its gate, which effects' posts also
//     take, so nothing can reach it after it decided to stop.
//     Otherwise it answers stopCancelled and stays.
//  4. On Terminated the manager starts a fresh activation for the buffered
//     commands, if any; on stopCancelled it posts them to the child, in
//     order, and reopens the route, so direct commands come after them.
//
// So the invariants: at most one activation per id is live in this
// process; a child stops only between messages, with nothing queued and no
// effect running; every command the manager holds for a stopping child
// runs, in arrival order, in the next activation or the same one.
// MaxLive is a target, not a hard cap: a child with work in flight refuses
// to be evicted, and the manager evicts others on the next activation; a
// child that refused tells the manager once its work is done (evictable),
// and goes then if the type is still over MaxLive.

// Messages between the manager and its children. One can race an actor
// stopping (a child's passivateOK against the manager's shutdown, say);
// losing it then is harmless, so they are exempt from dead-letter logging.
type (
	sweepIdle      struct{}
	passivateCheck struct{}
	passivateOK    struct {
		pid   *protoactor.PID
		epoch uint64 // commands the child had handled when it agreed
	}
	stopIfIdle struct {
		epoch uint64 // of passivateOK; ignored for an eviction
		evict bool
	}
	stopCancelled struct{ pid *protoactor.PID }
	// evictable tells the manager that a child that refused eviction is
	// idle again; drained asks a child that refused to check.
	evictable struct{ pid *protoactor.PID }
	drained   struct{}
)

func (sweepIdle) IgnoreDeadLetterLogging()      {}
func (passivateCheck) IgnoreDeadLetterLogging() {}
func (passivateOK) IgnoreDeadLetterLogging()    {}
func (stopIfIdle) IgnoreDeadLetterLogging()     {}
func (stopCancelled) IgnoreDeadLetterLogging()  {}
func (evictable) IgnoreDeadLetterLogging()      {}
func (drained) IgnoreDeadLetterLogging()        {}

// child is the manager's view of one aggregate actor.
type child[S, C, E any] struct {
	id       string
	pid      *protoactor.PID
	route    *route[S, C, E] // for commands that skip the manager
	lastUsed time.Time       // of the last command routed here; see used
	lru      *list.Element
	stopping bool                 // asked to stop: new commands wait in buffer
	evicting bool                 // the stop asked is an eviction
	refused  time.Time            // when it last refused to be evicted
	buffer   []*envelope[S, C, E] // commands for the next activation
}

// manager routes the commands of one aggregate type to one child per id,
// which it creates on demand and stops when idle or when over MaxLive. While
// a child is stopping, commands for its id wait, and go to a fresh child
// once the old one has stopped: at most one activation per id is live in
// this process.
type manager[S, C, E, Env any] struct {
	h         *host[S, C, E, Env]
	children  map[string]*child[S, C, E]
	byPID     map[string]string // child pid id -> aggregate id
	lru       list.List         // of *child, most recently used first
	nStopping int
}

func (m *manager[S, C, E, Env]) Receive(ctx protoactor.Context) {
	switch msg := ctx.Message().(type) {
	case *envelope[S, C, E]:
		m.route(ctx, msg)
	case sweepIdle:
		m.sweep(ctx)
	case passivateOK:
		if id, ok := m.byPID[msg.pid.Id]; ok {
			m.stopChild(ctx, m.children[id], stopIfIdle{epoch: msg.epoch})
		}
	case stopCancelled:
		if id, ok := m.byPID[msg.pid.Id]; ok {
			m.resume(ctx, m.children[id])
		}
	case evictable:
		if id, ok := m.byPID[msg.pid.Id]; ok {
			m.evictable(ctx, m.children[id])
		}
	case *protoactor.Terminated:
		m.terminated(ctx, msg.Who)
	}
}

func (m *manager[S, C, E, Env]) route(ctx protoactor.Context, msg *envelope[S, C, E]) {
	c, ok := m.children[msg.id]
	switch {
	case ok && c.stopping:
		c.buffer = append(c.buffer, msg)
		return
	case !ok:
		c = m.spawn(ctx, msg.id)
		defer m.openRoute(c) // once msg is in the mailbox: direct commands come after it
	}
	c.lastUsed = m.h.rt.clock.Now()
	m.lru.MoveToFront(c.lru)
	c.route.post(ctx.Send, msg)
}

func (m *manager[S, C, E, Env]) spawn(ctx protoactor.Context, id string) *child[S, C, E] {
	for len(m.children)-m.nStopping >= m.h.opts.MaxLive {
		oldest := m.leastRecentlyUsed()
		if oldest == nil {
			break
		}
		m.stopChild(ctx, oldest, stopIfIdle{evict: true})
	}
	r := &route[S, C, E]{}
	e := newEntity(m.h, id, r)
	r.inline = e.runInline
	r.pid = ctx.Spawn(protoactor.PropsFromProducer(func() protoactor.Actor { return e }, protoactor.WithDispatcher(m.h.rt.workers)))
	pid := r.pid
	c := &child[S, C, E]{id: id, pid: pid, route: r}
	c.lru = m.lru.PushFront(c)
	m.children[id] = c
	m.byPID[pid.Id] = id
	m.h.live.Add(1)
	if m.h.spawned != nil {
		m.h.spawned(id, pid)
	}
	return c
}

// stopChild asks c to stop once it is idle (steps 2 and 3 of the
// handshake).
func (m *manager[S, C, E, Env]) stopChild(ctx protoactor.Context, c *child[S, C, E], req stopIfIdle) {
	if c == nil || c.stopping {
		return
	}
	c.stopping, c.evicting = true, req.evict
	m.closeRoute(c)
	m.nStopping++
	m.h.live.Add(-1)
	c.route.post(ctx.Send, req)
}

// evictable takes note that c, which refused eviction, is idle again: it
// is a candidate again, and goes at once if the type is over MaxLive.
func (m *manager[S, C, E, Env]) evictable(ctx protoactor.Context, c *child[S, C, E]) {
	if c == nil || c.stopping {
		return
	}
	c.refused = time.Time{}
	if len(m.children)-m.nStopping > m.h.opts.MaxLive {
		m.stopChild(ctx, c, stopIfIdle{evict: true})
	}
}

// resume takes back a child that refused to stop: the commands held for
// it go to it first, then the route reopens (step 4). It becomes the most
// recently used, so that eviction asks others first.
func (m *manager[S, C, E, Env]) resume(ctx protoactor.Context, c *child[S, C, E]) {
	if c == nil || !c.stopping {
		return
	}
	c.stopping = false
	m.nStopping--
	m.h.live.Add(1)
	c.lastUsed = m.h.rt.clock.Now()
	if c.evicting {
		c.refused = c.lastUsed
	}
	m.lru.MoveToFront(c.lru)
	for _, msg := range c.buffer {
		c.route.post(ctx.Send, msg)
	}
	c.buffer = nil
	c.route.mu.Lock()
	c.route.closed = false
	c.route.mu.Unlock()
	m.openRoute(c)
}

func (m *manager[S, C, E, Env]) terminated(ctx protoactor.Context, pid *protoactor.PID) {
	id, ok := m.byPID[pid.Id]
	if !ok {
		return
	}
	delete(m.byPID, pid.Id)
	c := m.children[id]
	m.closeRoute(c)
	m.lru.Remove(c.lru)
	delete(m.children, id)
	if c.stopping {
		m.nStopping--
	} else {
		m.h.live.Add(-1) // stopped on its own
	}
	if len(c.buffer) == 0 {
		return
	}
	next := m.spawn(ctx, id)
	next.lastUsed = m.h.rt.clock.Now()
	for _, msg := range c.buffer {
		next.route.post(ctx.Send, msg)
	}
	m.openRoute(next) // the held commands first
}

func (m *manager[S, C, E, Env]) sweep(ctx protoactor.Context) {
	idleSince := m.h.rt.clock.Now().Add(-m.h.opts.IdleTimeout)
	for e := m.lru.Back(); e != nil; {
		c := e.Value.(*child[S, C, E])
		prev := e.Prev()
		switch {
		case m.used(c):
			// Used directly since it was last routed: moved to the front.
			// The walk may meet it again there, now up to date.
		case c.lastUsed.After(idleSince):
			return // the rest were used more recently
		case !c.stopping && c.route.checking.CompareAndSwap(false, true):
			// At most one check waits in a child's mailbox: a busy child
			// ignores checks, and sweeps must not pile them up.
			c.route.post(ctx.Send, passivateCheck{})
		}
		e = prev
	}
}

// used brings c's last use and place in the LRU list up to date with
// commands that skipped the manager, and reports whether there were any.
// Direct uses are recorded as wall-clock nanoseconds (an atomic cannot hold
// a time.Time's monotonic reading), so a forward step of the wall clock by
// IdleTimeout or more can passivate aggregates early: a cost, not a fault.
func (m *manager[S, C, E, Env]) used(c *child[S, C, E]) bool {
	direct := time.Unix(0, c.route.lastUsed.Load())
	if !direct.After(c.lastUsed) {
		return false
	}
	c.lastUsed = direct
	m.lru.MoveToFront(c.lru)
	return true
}

// leastRecentlyUsed returns the live child to evict when over MaxLive: the
// back of the LRU list, once children used directly since were moved to the
// front. The walk is bounded by the list's length; if every child keeps
// being used, the last one found at the back goes.
func (m *manager[S, C, E, Env]) leastRecentlyUsed() *child[S, C, E] {
	var last *child[S, C, E]
	// A child that refused eviction is busy; it is not asked again until
	// it says it is idle (evictable) or for half an idle timeout, or every
	// activation beyond MaxLive would ask every busy child.
	refusedSince := m.h.rt.clock.Now().Add(-max(m.h.opts.IdleTimeout/2, time.Millisecond))
	skip := func(c *child[S, C, E]) bool { return c.stopping || c.refused.After(refusedSince) }
	for range m.lru.Len() {
		e := m.lru.Back()
		for e != nil && skip(e.Value.(*child[S, C, E])) {
			e = e.Prev()
		}
		if e == nil {
			return nil
		}
		last = e.Value.(*child[S, C, E])
		if !m.used(last) {
			return last
		}
	}
	return last
}

// openRoute lets commands for c's id skip the manager. The manager opens
// it only after the commands it holds for c are in c's mailbox, so that
// direct commands cannot overtake them.
func (m *manager[S, C, E, Env]) openRoute(c *child[S, C, E]) {
	if !c.stopping {
		m.h.routes.store(c.id, c.route)
	}
}

// closeRoute makes commands for c's id go through the manager again. Once
// it returns, no direct post to c is in progress or will start.
func (m *manager[S, C, E, Env]) closeRoute(c *child[S, C, E]) {
	c.route.mu.Lock()
	c.route.closed = true
	c.route.mu.Unlock()
	m.h.routes.remove(c.id, c.route)
}

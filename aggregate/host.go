package aggregate

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"

	"github.com/composable-go/composable/persistence"
)

// host runs one aggregate type: a manager actor that routes commands to one
// child actor per id, and the in-flight slots of the type.
type host[S, C, E, Env any] struct {
	rt      *Runtime
	def     Definition[S, C, E, Env]
	opts    Options
	slots   *slots // in-flight commands, up to Options.MaxInFlight
	manager *protoactor.PID
	sched   *scheduler   // fires the type's durable timers; nil without OnTimer
	live    atomic.Int64 // children of the manager
	// replies recycles reply channels that delivered their reply. A
	// channel whose caller gave up is never put back: the reply may still
	// come.
	replies sync.Pool
	// routes holds the route of each live, not stopping child, for
	// commands to skip the manager.
	routes routeTable[S, C, E]
	// metadata holds, per command type name, the metadata of events whose
	// command carries no metadata and no id. Shared and never modified.
	metadata sync.Map

	// spawned, when set by a test before any command, is called on the
	// manager's goroutine with each new child.
	spawned func(id string, pid *protoactor.PID)
}

// envelope is a command, or a state query, on its way to an aggregate.
type envelope[S, C, E any] struct {
	ctx       context.Context
	id        string
	cmd       C
	query     bool
	commandID string
	metadata  map[string]string
	reply     chan reply[S, E]   // nil for commands fed back by effects
	slots     *slots             // holds one of them for the command; nil for effect commands
	timer     *persistence.Timer // the durable timer the command fires, if it does
}

type reply[S, E any] struct {
	res Result[S, E]
	err error
}

func newHost[S, C, E, Env any](rt *Runtime, def Definition[S, C, E, Env], opts Options) (*host[S, C, E, Env], error) {
	if def.Clone == nil {
		def.Clone = func(s S) S { return s }
	}
	if def.Initial == nil {
		def.Initial = func(string) S { var s S; return s }
	}
	h := &host[S, C, E, Env]{rt: rt, def: def, opts: opts, slots: &slots{max: int64(opts.MaxInFlight)}}
	m := &manager[S, C, E, Env]{h: h, children: map[string]*child[S, C, E]{}, byPID: map[string]string{}}
	h.manager = rt.sys.ActorSystem().Root.SpawnPrefix(protoactor.PropsFromProducer(func() protoactor.Actor { return m }, protoactor.WithDispatcher(protoactor.NewSynchronizedDispatcher(300))), "aggregate-"+def.Type+"-")
	rt.sweeps.Add(1)
	go func() {
		defer rt.sweeps.Done()
		h.sweep()
	}()
	if def.OnTimer != nil {
		h.sched = newScheduler(h)
		rt.sweeps.Add(1)
		go func() {
			defer rt.sweeps.Done()
			h.sched.run(rt.life)
		}()
	}
	return h, nil
}

// request sends m through the manager and waits for the reply.
func (h *host[S, C, E, Env]) request(ctx context.Context, m *envelope[S, C, E]) (Result[S, E], error) {
	if err := ctx.Err(); err != nil {
		return Result[S, E]{}, err
	}
	if err := h.validID(m.id); err != nil {
		return Result[S, E]{}, err
	}
	for k := range m.metadata {
		if persistence.ReservedMetadata(k) {
			return Result[S, E]{}, fmt.Errorf("%w: %s is written by the framework (use WithCommandID)", persistence.ErrReservedMetadata, persistence.Quote(k))
		}
	}
	if err := h.rt.admit(h.slots); err != nil {
		return Result[S, E]{}, err
	}
	replies, _ := h.replies.Get().(chan reply[S, E])
	if replies == nil {
		replies = make(chan reply[S, E], 1)
	}
	m.ctx, m.slots, m.reply = ctx, h.slots, replies
	if !h.sendDirect(m) {
		h.rt.sys.ActorSystem().Root.Send(h.manager, m)
	}
	select {
	case r := <-m.reply:
		h.replies.Put(replies) // empty, and nothing else will send on it
		return r.res, r.err
	case <-ctx.Done():
		return Result[S, E]{}, ctx.Err()
	}
}

// typeMetadata returns the shared metadata of events of a command like cmd
// that carries no metadata and no id.
func (h *host[S, C, E, Env]) typeMetadata(cmd C) map[string]string {
	name := typeName(cmd)
	if md, ok := h.metadata.Load(name); ok {
		return md.(map[string]string)
	}
	md, _ := h.metadata.LoadOrStore(name, map[string]string{persistence.MetadataCommandType: name})
	return md.(map[string]string)
}

// route is the way to one live child that skips the manager. A sender
// posts to the child holding mu for reading, and only while closed is
// false; the manager sets closed holding mu before it stops the child, so
// every direct post is in the child's mailbox before the stop, and is
// handled by this activation. Later commands go through the manager, which
// holds them for the next activation.
//
// A command for a child with nothing to do runs on the sender's goroutine
// instead: the hand-off to a worker costs as much as the command itself.
// The child holds exec while it handles any message, and queued counts the
// messages posted to it and not yet taken: a sender that gets exec while
// none is queued may run its command in place (inline), after everything
// posted before it and before anything posted after.
type route[S, C, E any] struct {
	pid      *protoactor.PID
	mu       sync.RWMutex
	closed   bool
	lastUsed atomic.Int64 // runtime clock, Unix nanoseconds, of the last direct use
	checking atomic.Bool  // a passivateCheck is in the child's mailbox

	exec   sync.Mutex
	queued atomic.Int64
	inline func(*envelope[S, C, E]) bool // runs a command in place if the child can; holds exec
}

// runInline runs m in place, if the child can, and releases exec.
func (r *route[S, C, E]) runInline(m *envelope[S, C, E]) bool {
	defer r.exec.Unlock()
	return r.inline(m)
}

// post sends msg to the child, counted in queued.
func (r *route[S, C, E]) post(send func(*protoactor.PID, any), msg any) {
	r.queued.Add(1)
	send(r.pid, msg)
}

// routeTable maps ids to routes. Every command reads it and only
// activations and stops write it, so a map under a read-write lock beats
// a sync.Map, whose lookups chase pointers through a trie.
type routeTable[S, C, E any] struct {
	mu sync.RWMutex
	m  map[string]*route[S, C, E]
}

func (t *routeTable[S, C, E]) load(id string) *route[S, C, E] {
	t.mu.RLock()
	r := t.m[id]
	t.mu.RUnlock()
	return r
}

func (t *routeTable[S, C, E]) store(id string, r *route[S, C, E]) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]*route[S, C, E]{}
	}
	t.m[id] = r
	t.mu.Unlock()
}

// remove deletes id's route if it is r.
func (t *routeTable[S, C, E]) remove(id string, r *route[S, C, E]) {
	t.mu.Lock()
	if t.m[id] == r {
		delete(t.m, id)
	}
	t.mu.Unlock()
}

// sendDirect posts m straight to its aggregate if that one is live and not
// stopping, and reports whether it did. If the aggregate is idle, m runs
// here, on the caller's goroutine.
func (h *host[S, C, E, Env]) sendDirect(m *envelope[S, C, E]) bool {
	r := h.routes.load(m.id)
	if r == nil {
		return false
	}
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return false
	}
	r.lastUsed.Store(h.rt.clock.Now().UnixNano())
	if r.exec.TryLock() {
		if r.queued.Load() == 0 {
			// Nothing is queued or running: m is next. The child stays
			// live until exec is released — the manager closes the route
			// before it stops the child, and the stop waits for exec — so
			// the route's lock need not be held meanwhile.
			r.mu.RUnlock()
			if r.runInline(m) {
				return true
			}
			return h.post(r, m)
		}
		r.exec.Unlock()
	}
	defer r.mu.RUnlock()
	r.post(h.rt.sys.ActorSystem().Root.Send, m) // never blocks: the mailbox is unbounded
	return true
}

// post posts m to r's child if r is still open.
func (h *host[S, C, E, Env]) post(r *route[S, C, E], m *envelope[S, C, E]) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return false
	}
	r.post(h.rt.sys.ActorSystem().Root.Send, m)
	return true
}

// sweep asks the manager, every half idle timeout on the runtime's clock,
// to passivate idle aggregates.
func (h *host[S, C, E, Env]) sweep() {
	every := max(h.opts.IdleTimeout/2, time.Millisecond)
	for {
		select {
		case <-h.rt.clock.After(every):
			h.rt.sys.ActorSystem().Root.Send(h.manager, sweepIdle{})
		case <-h.rt.stop:
			return
		}
	}
}

// shutdown stops the manager, which stops its children.
func (h *host[S, C, E, Env]) shutdown() {
	_ = h.rt.sys.ActorSystem().Root.PoisonFuture(h.manager).Wait()
}

// validID refuses an id no stream can be named after, before an actor is
// spawned for it.
// It runs on every command: it builds no stream name (the type was
// checked at Register).
func (h *host[S, C, E, Env]) validID(id string) error {
	switch n := len(h.def.Type) + 1 + len(id); {
	case id == "":
		return fmt.Errorf("%w: empty, for type %s", ErrInvalidID, persistence.Quote(h.def.Type))
	case !persistence.ValidStreamID(id):
		return fmt.Errorf("%w: %s is not valid UTF-8 or holds a NUL byte", ErrInvalidID, persistence.Quote(id))
	case n > persistence.MaxIDLength:
		return fmt.Errorf("%w: %s makes a stream id of %d bytes, limit %d", ErrInvalidID, persistence.Quote(id), n, persistence.MaxIDLength)
	}
	return nil
}

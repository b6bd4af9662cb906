// Package cluster routes commands between the nodes of a cluster: a
// command for aggregate order/42 sent on any node reaches the node that
// owns order/42 under the current members (cluster/membership), placed by
// rendezvous hashing (cluster/placement), carried by a Transport as
// cluster/wire messages.
//
// The routing protocol, stated once:
//
//   - The owner of an aggregate is the member hosting its type that
//     placement ranks first for "type/id". Members are placed by node
//     name, not by member id, so a node that joins again after a loss
//     owns the same aggregates; of two records of one name, the newest
//     generation counts.
//   - The sender sends to the owner under its own view. The receiver
//     checks the command (wire.CheckCommand) and that it owns the
//     aggregate under its own view; if not, it answers ErrNotOwner and
//     runs nothing.
//   - On a refusal before running — ErrNotOwner, or ErrShuttingDown from
//     a member not serving — the sender waits for its view to change (or
//     a back-off, up to a second) and tries again with the owner it then
//     sees, until the call's one deadline (its ctx). A call that got no
//     answer may have run: it is given up, and sent again, only once its
//     member has left the view, whose writes are then fenced off. Every
//     other error is the command's outcome.
//   - Calls in flight to one member are bounded (MaxInFlight): callers of
//     a member that stopped answering wait for a slot of that member
//     only, never for the others'.
//
// Routing decides where a command runs, not whether it may write: two
// nodes with different views may both run a command for one aggregate
// for a moment. The event store's expected-version check, command ids and
// the member fence (persistence/postgres WithFence) keep that correct.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/cluster/placement"
	"github.com/composable-go/composable/cluster/wire"
	"github.com/composable-go/composable/persistence"
)

// Transport carries a command to another member and brings its reply
// back. An error is the transport's: the member could not be reached or
// did not answer in time.
type Transport interface {
	Call(ctx context.Context, to membership.Member, cmd *wire.Command) (*wire.Reply, error)
}

// Local runs a command on this node, which owns its aggregate.
type Local func(ctx context.Context, cmd *wire.Command) *wire.Reply

// ErrNoOwner is returned when no member hosts the command's aggregate
// type until the call's deadline.
var ErrNoOwner = errors.New("cluster: no member hosts the aggregate type")

// RouterConfig configures a [Router].
type RouterConfig struct {
	// Self returns this node's member record, and false while it is not
	// a member (between a loss and the next join). Required.
	Self func() (membership.Member, bool)
	// View returns the members as this node last read them. Required.
	View func() []membership.Member
	// Changed returns a channel closed or sent on at the next change of
	// View; nil to rely on back-off alone.
	Changed func() <-chan struct{}
	// Epoch returns a number that changes with View (and with Self): the
	// runtime's activations catch up from the store when it moved
	// (aggregate.Remote.Epoch). Nil: it never changes — only for views
	// that never change.
	Epoch func() uint64
	// Transport carries commands to other members. Required.
	Transport Transport
	// Local runs the commands this node owns; Serve sets it to an
	// aggregate runtime. Until one is set, commands for this node fail
	// with aggregate.ErrShuttingDown.
	Local Local
	// MaxInFlight bounds the calls in flight to one member. Default 256.
	MaxInFlight int
	// MaxData bounds a received command's data (wire.CheckCommand).
	MaxData int
	// Clock times back-offs. Default the system clock.
	Clock composable.Clock
	// Logger receives routing retries. Default slog.Default().
	Logger *slog.Logger
}

// Router routes commands to their owners. It is safe for concurrent use.
type Router struct {
	cfg   RouterConfig
	local atomic.Pointer[Local]

	mu    sync.Mutex
	slots map[string]chan struct{} // by member id: the calls in flight to it
}

// NewRouter returns a router.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Self == nil || cfg.View == nil || cfg.Transport == nil {
		return nil, fmt.Errorf("cluster: RouterConfig needs Self, View and Transport")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Clock == nil {
		cfg.Clock = composable.SystemClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Router{cfg: cfg, slots: map[string]chan struct{}{}}
	if cfg.Local != nil {
		r.local.Store(&cfg.Local)
	}
	return r, nil
}

// runLocal runs cmd here.
func (r *Router) runLocal(ctx context.Context, cmd *wire.Command) *wire.Reply {
	local := r.local.Load()
	if local == nil {
		return &wire.Reply{Error: wire.EncodeError(fmt.Errorf("%w: this node serves no runtime yet", aggregate.ErrShuttingDown))}
	}
	return (*local)(ctx, cmd)
}

// Owner returns the member that owns the aggregate typ/id under view, and
// false when no member hosts typ.
func Owner(view []membership.Member, typ, id string) (membership.Member, bool) {
	newest := map[string]membership.Member{} // by name
	var names []string
	for _, m := range view {
		if !hosts(m, typ) {
			continue
		}
		cur, seen := newest[m.Name]
		if !seen {
			names = append(names, m.Name)
		}
		if !seen || m.Generation > cur.Generation {
			newest[m.Name] = m
		}
	}
	name, ok := placement.Owner(typ+"/"+id, names)
	return newest[name], ok
}

func hosts(m membership.Member, typ string) bool {
	for _, k := range m.Kinds {
		if k == typ {
			return true
		}
	}
	return false
}

// Send runs cmd on the owner of its aggregate and returns the reply: on
// this node through Local, on another through the Transport; the
// command's own failure is in the reply. A refusal before running
// (ErrNotOwner, a node not serving) is routed again; a call that got no
// answer — the command may have run — is sent again only once its member
// has left the view. Send returns an error when ctx ends first: ErrNoOwner
// if no member hosts the type, and "it may have run" after a call that got
// no answer.
func (r *Router) Send(ctx context.Context, cmd *wire.Command) (*wire.Reply, error) {
	backoff := 10 * time.Millisecond
	for {
		var changed <-chan struct{}
		if r.cfg.Changed != nil {
			changed = r.cfg.Changed() // before reading the view: a change after the read wakes us
		}
		owner, ok := Owner(r.cfg.View(), cmd.AggregateType, cmd.AggregateId)
		var err error
		switch self, member := r.cfg.Self(); {
		case !ok:
			err = fmt.Errorf("%w: %s", ErrNoOwner, persistence.Quote(cmd.AggregateType))
		case member && owner.ID == self.ID:
			return r.runLocal(ctx, cmd), nil
		default:
			var reply *wire.Reply
			reply, err = r.callWhileOwner(ctx, owner, changed, cmd)
			refused := wire.DecodeError(reply.GetError())
			switch {
			case err == nil && !errors.Is(refused, wire.ErrNotOwner) && !errors.Is(refused, aggregate.ErrShuttingDown):
				return reply, nil
			case err == nil:
				// Refused before running: not the owner under its view, or
				// not serving (starting, stopping). Route again.
				err = fmt.Errorf("cluster: %s: %w", owner.ID, refused)
			default:
				// No answer: the command may have reached the owner and
				// run. Send it again only once that member has left the
				// view — its writes are then fenced off.
				if !r.waitUntilGone(ctx, owner.ID) {
					return nil, fmt.Errorf("cluster: %s/%s: %w (last: %w; it may have run)", persistence.Quote(cmd.AggregateType), persistence.Quote(cmd.AggregateId), ctx.Err(), err)
				}
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cluster: %s/%s: %w (last: %w)", persistence.Quote(cmd.AggregateType), persistence.Quote(cmd.AggregateId), ctx.Err(), err)
		}
		r.cfg.Logger.Debug("cluster: routing again", "type", cmd.AggregateType, "id", persistence.Quote(cmd.AggregateId), "error", err)
		if !r.waitForChange(ctx, changed, backoff) {
			return nil, fmt.Errorf("cluster: %s/%s: %w (last: %w)", persistence.Quote(cmd.AggregateType), persistence.Quote(cmd.AggregateId), ctx.Err(), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// waitUntilGone waits until member is no longer in the view; it reports
// false when ctx ended first.
func (r *Router) waitUntilGone(ctx context.Context, member string) bool {
	for {
		var changed <-chan struct{}
		if r.cfg.Changed != nil {
			changed = r.cfg.Changed()
		}
		if !isMember(r.cfg.View(), member) {
			return true
		}
		if !r.waitForChange(ctx, changed, time.Second) {
			return false
		}
	}
}

// callWhileOwner calls owner, and gives the call up — waiting for a slot
// or for the reply — once owner is no longer a member in the view (its
// record expired or it left): the command is then sent to the new owner.
// An owner that is still a member, though a join moved the aggregate
// away, is left to answer: it refuses with ErrNotOwner or runs the
// command, never both nodes. The old owner of a given-up call cannot
// commit once its membership expired (the store's fence), except within
// the time its COMMIT takes; command ids make even that safe.
func (r *Router) callWhileOwner(ctx context.Context, owner membership.Member, changed <-chan struct{}, cmd *wire.Command) (*wire.Reply, error) {
	if changed == nil {
		return r.call(ctx, owner, cmd)
	}
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-changed:
			}
			changed = r.cfg.Changed()
			if !isMember(r.cfg.View(), owner.ID) {
				cancel()
				return
			}
		}
	}()
	reply, err := r.call(callCtx, owner, cmd)
	if err != nil && ctx.Err() == nil && callCtx.Err() != nil {
		err = fmt.Errorf("cluster: %s no longer owns the aggregate: %w", owner.ID, err)
	}
	return reply, err
}

// call sends cmd to owner within its slots.
func (r *Router) call(ctx context.Context, owner membership.Member, cmd *wire.Command) (*wire.Reply, error) {
	slots := r.slotsOf(owner.ID)
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: waiting to call %s: %w", owner.ID, ctx.Err())
	}
	defer func() { <-slots }()
	reply, err := r.cfg.Transport.Call(ctx, owner, cmd)
	if err == nil && reply == nil {
		err = errors.New("cluster: empty reply")
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: call %s: %w", owner.ID, err)
	}
	return reply, nil
}

func (r *Router) slotsOf(member string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.slots[member]
	if !ok {
		s = make(chan struct{}, r.cfg.MaxInFlight)
		r.slots[member] = s
	}
	return s
}

// waitForChange waits for the view to change or for d on the clock; it
// reports false when ctx ended first.
func (r *Router) waitForChange(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	var timer <-chan time.Time
	stop := func() {}
	if tc, ok := r.cfg.Clock.(composable.TimerClock); ok {
		timer, stop = tc.NewTimer(d)
	} else {
		timer = r.cfg.Clock.After(d)
	}
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	case <-timer:
	}
	return true
}

// Receive runs a command another node sent: it checks the command, and
// that this node owns its aggregate under its view — if not it answers
// ErrNotOwner and runs nothing.
func (r *Router) Receive(ctx context.Context, cmd *wire.Command) *wire.Reply {
	if err := wire.CheckCommand(cmd, r.cfg.MaxData); err != nil {
		return &wire.Reply{Error: wire.EncodeError(err)}
	}
	self, member := r.cfg.Self()
	owner, ok := Owner(r.cfg.View(), cmd.AggregateType, cmd.AggregateId)
	if !member || !ok || owner.ID != self.ID {
		return &wire.Reply{Error: wire.EncodeError(fmt.Errorf("%w: %s/%s (this node is %s, the owner %s)",
			wire.ErrNotOwner, persistence.Quote(cmd.AggregateType), persistence.Quote(cmd.AggregateId), self.ID, owner.ID))}
	}
	return r.runLocal(ctx, cmd)
}

// isMember reports whether id is a member in view.
func isMember(view []membership.Member, id string) bool {
	for _, m := range view {
		if m.ID == id {
			return true
		}
	}
	return false
}

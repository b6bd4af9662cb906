package aggregate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/persistence"
)

// Decision is what a command handler decided: the events to append, in
// order, and an optional effect whose actions are commands fed back to the
// same aggregate (a retry later, say). An empty decision accepts the command
// and changes nothing.
type Decision[C, E any] struct {
	Events []E
	Effect composable.Effect[C]
	// Timers arms and cancels durable timers of the aggregate, in order,
	// atomically with Events, which must not be empty: the state should
	// record what it waits for. See [Definition].OnTimer.
	Timers []Timer
}

// Timer arms a durable timer of the aggregate — or, with Cancel, disarms
// it. Unlike a Delay effect it is a row in the store, written with the
// decision's events: it survives passivation, eviction and restarts, and
// the runtime's scheduler fires it once, at Due, by sending the command
// [Definition].OnTimer makes of it. Arming a pending name replaces it.
type Timer struct {
	Name string
	// Due is when the timer fires; OnTimer gets it back exactly. Ignored
	// with Cancel.
	Due    time.Time
	Cancel bool
}

// Arm returns d with a durable timer armed (see [Timer]).
func (d Decision[C, E]) Arm(name string, due time.Time) Decision[C, E] {
	d.Timers = append(d.Timers, Timer{Name: name, Due: due})
	return d
}

// Disarm returns d with a durable timer cancelled; cancelling a timer that
// is not pending does nothing.
func (d Decision[C, E]) Disarm(name string) Decision[C, E] {
	d.Timers = append(d.Timers, Timer{Name: name, Cancel: true})
	return d
}

// Emit returns a decision that appends events. Both type parameters have to
// be given when the event type is an interface (it usually is), or Go infers
// the concrete event type: aggregate.Emit[Command, Event](OrderPlaced{...}).
func Emit[C, E any](events ...E) Decision[C, E] {
	return Decision[C, E]{Events: events}
}

// Reject returns an empty decision and err, for handlers that refuse a
// command: return aggregate.Reject[Command, Event](ErrAlreadyShipped).
func Reject[C, E any](err error) (Decision[C, E], error) { return Decision[C, E]{}, err }

// Then returns d with effect e merged into its effect.
func (d Decision[C, E]) Then(e composable.Effect[C]) Decision[C, E] {
	d.Effect = composable.Merge(d.Effect, e)
	return d
}

// Definition declares an aggregate type: pure functions over a state S,
// commands C and events E, with an environment Env of dependencies (clock,
// id generator, read-only services) so that the functions stay
// deterministic. S, C and E are protobuf messages or plain structs; E is
// usually an interface implemented by one type per event, each registered in
// Events.
//
// The rule that makes replay equal live: state changes only by Apply. The
// runtime never calls Handle with a state it has not built from events.
type Definition[S, C, E, Env any] struct {
	// Type names the aggregate type, e.g. "order". Streams are named
	// Type + "/" + id, so Type may not contain "/". Required.
	Type string
	// Initial returns the state of an aggregate without events.
	// Default: the zero S.
	Initial func(id string) S
	// Handle validates cmd against state and decides. It must be pure: no
	// I/O, no clock or randomness except through env. A returned error is a
	// business rejection: the caller gets it (matching ErrRejected and the
	// error itself) and nothing is written. Required.
	Handle func(state S, cmd C, env Env) (Decision[C, E], error)
	// Apply evolves state by one event, in place. It must be pure and must
	// not fail: events are facts. Required.
	Apply func(state *S, event E)
	// Events encodes and decodes the events; every event type Handle can
	// return must be registered. Required.
	Events *persistence.Registry
	// Commands encodes and decodes the commands, for a runtime that is
	// part of a cluster (WithRemote): a command for an aggregate another
	// process owns is sent to it encoded. Every command type callers send
	// must be registered. Optional otherwise.
	Commands *persistence.Registry
	// Snapshots encodes states for snapshots. Its schema version must change
	// whenever the encoding of S does: a snapshot written with another
	// version is ignored and the stream replayed.
	Snapshots persistence.SnapshotCodec[S]
	// Clone copies a state. Apply runs on a copy, so that a panic or a
	// failed append leaves the live state untouched; the default plain
	// assignment is a full copy only for states made of values. Set it for
	// states with maps, slices or pointers. (When it is not set the runtime
	// still rehydrates after any failure, so correctness does not depend on
	// it — only the cost of a failure does.)
	Clone func(S) S
	// OnActivate, if set, returns an effect to start each time the
	// aggregate becomes active, right after its state was rebuilt from the
	// store: after a restart, a passivation or a move to another node. It
	// re-arms what the state says is pending — timers, say (see package
	// saga). It must be pure, like Handle.
	OnActivate func(state S, env Env) composable.Effect[C]
	// OnTimer returns the command a due durable timer sends to its
	// aggregate (see [Decision].Timers). Each arming fires once: the
	// command carries the arming's id as its command id, and if the
	// command appends events they remove the timer in their transaction.
	// A firing may still meet a state that cancelled or re-armed the timer
	// a moment before: compare due with what the state records. A firing
	// that records no event must start no effect (only an appended firing
	// is known to have fired). A firing the aggregate rejects, one whose
	// decision cannot be carried out (ErrInvalidDecision), and a panic in
	// OnTimer drop the timer, logged; other failures — the store, a panic
	// in Handle — are retried with back-off. Required for aggregates that
	// arm timers; it needs a store that keeps them
	// ([persistence.TimerStore]). It must be pure.
	OnTimer func(name string, due time.Time) C
	// Env is passed to every Handle call.
	Env Env
}

// Validate reports every problem with d at once; each matches
// ErrInvalidDefinition.
func (d Definition[S, C, E, Env]) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidDefinition}, args...)...))
	}
	switch {
	case d.Type == "":
		bad("Type is required")
	case strings.Contains(d.Type, "/"):
		bad("Type %s contains '/'", persistence.Quote(d.Type))
	case !persistence.ValidStreamID(d.Type):
		bad("Type %s is not valid UTF-8 or holds a NUL byte", persistence.Quote(d.Type))
	case len(d.Type) > 255:
		bad("Type %s is longer than 255 bytes", persistence.Quote(d.Type))
	}
	if d.Handle == nil {
		bad("Handle is required")
	}
	if d.Apply == nil {
		bad("Apply is required")
	}
	if d.Events == nil {
		bad("Events (a *persistence.Registry) is required")
	}
	if err := d.Snapshots.Validate(); err != nil {
		bad("Snapshots: %v", err)
	}
	return errors.Join(errs...)
}

// Options tunes how a runtime hosts one aggregate type. The zero value uses
// the defaults documented on each field.
type Options struct {
	// SnapshotEvery saves a snapshot when this many events were appended
	// since the last one. Default 100; negative disables snapshots.
	SnapshotEvery int
	// SnapshotOnPassivation also saves a snapshot when an idle aggregate
	// stops, if it has events since the last one.
	SnapshotOnPassivation bool
	// IdleTimeout passivates an aggregate that received nothing for this
	// long and runs no effect. Default 5 minutes.
	IdleTimeout time.Duration
	// MaxLive is how many aggregates of this type stay in memory; beyond
	// it the least recently used one is stopped. An aggregate with an
	// effect in flight (a pending Delay, say) is never stopped for it, so
	// the count can exceed MaxLive while such effects run. Default 10,000.
	MaxLive int
	// TimerBatch is how many durable timers the scheduler reads at once,
	// and at most how many firings it has in flight (never more than
	// MaxLive). Default 256.
	TimerBatch int
	// TimerPoll bounds how long the scheduler sleeps without reading the
	// timers: a timer armed by another process's runtime, due before the
	// one this scheduler waits for, fires up to this late. (Timers armed
	// through this runtime wake it at once.) Default 1s.
	TimerPoll time.Duration
	// MaxInFlight caps commands accepted but not yet answered for this
	// type; beyond it Send fails at once with ErrOverloaded. Default 10,000.
	MaxInFlight int
	// MaxAttempts bounds how often a command is re-run after a concurrency
	// conflict before ErrTooManyAttempts. Default 3.
	MaxAttempts int
	// DedupWindow is how many recent command ids each aggregate remembers
	// (across passivation and restarts: they are kept in snapshots and in
	// the events' metadata). Default 1,000.
	DedupWindow int
	// CommandTimeout bounds the store calls of one command. Default 30s.
	CommandTimeout time.Duration
	// MinBackoff and MaxBackoff bound how long an aggregate refuses commands
	// (with ErrUnavailable) after the store failed, doubling on each
	// consecutive failure. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.SnapshotEvery, 100)
	def(&o.MaxLive, 10_000)
	def(&o.MaxInFlight, 10_000)
	def(&o.MaxAttempts, 3)
	def(&o.DedupWindow, 1_000)
	def(&o.TimerBatch, 256)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&o.IdleTimeout, 5*time.Minute)
	defd(&o.CommandTimeout, 30*time.Second)
	defd(&o.MinBackoff, 100*time.Millisecond)
	defd(&o.MaxBackoff, 10*time.Second)
	defd(&o.TimerPoll, time.Second)
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.MaxLive < 1 || o.MaxInFlight < 1 || o.MaxAttempts < 1 || o.DedupWindow < 1 || o.TimerBatch < 1 {
		errs = append(errs, fmt.Errorf("%w: MaxLive, MaxInFlight, MaxAttempts, DedupWindow and TimerBatch must be positive", ErrInvalidDefinition))
	}
	if o.MinBackoff > o.MaxBackoff {
		errs = append(errs, fmt.Errorf("%w: MinBackoff %v above MaxBackoff %v", ErrInvalidDefinition, o.MinBackoff, o.MaxBackoff))
	}
	return errors.Join(errs...)
}

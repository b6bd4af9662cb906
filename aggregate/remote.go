package aggregate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/composable-go/composable/persistence"
)

// In a cluster an aggregate lives on one process, its owner; a Send on
// another process goes to it through a Remote (package cluster implements
// one). Commands, events and states cross in their encoded forms — the
// definition's Commands and Events registries and Snapshots codec — and
// errors keep their meaning (errors.Is matches ErrRejected and the others
// on the calling process). Without a Remote every command runs here.

// Remote carries commands to the aggregates this process does not own.
type Remote interface {
	// Owns reports whether this process owns aggregateType/id now: its
	// commands run here.
	Owns(aggregateType, id string) bool
	// Send runs cmd on the owner and returns its result.
	Send(ctx context.Context, cmd RemoteCommand) (RemoteResult, error)
	// Epoch changes whenever ownership may have changed (the members, as
	// this process sees them, changed). An activation made under an
	// older epoch catches up from the store before it handles anything:
	// while another process owned its aggregate, it may have written.
	Epoch() uint64
}

// RemoteCommand is a command, or a state query, on its way to the owner
// of its aggregate.
type RemoteCommand struct {
	// Type and ID name the aggregate.
	Type, ID string
	// Command is the command as the type's Commands registry encodes it
	// (its ID unused); empty for a query.
	Command persistence.EventData
	// Query asks for the state only, as Type.State does.
	Query bool
	// CommandID and Metadata are the Send options.
	CommandID string
	Metadata  map[string]string
	// Deadline is when the caller stops waiting; zero for none.
	Deadline time.Time
	// Timer is the durable timer the command fires, for a firing: the
	// owner removes the timer's row with the firing's events.
	Timer *persistence.Timer
}

// RemoteResult is a Result as the owner encodes it.
type RemoteResult struct {
	Version, Position int64
	Duplicate         bool
	// Events as the type's Events registry encodes them.
	Events []persistence.EventData
	// State through the type's Snapshots codec.
	State              []byte
	StateSchemaVersion int
}

// WithRemote makes the runtime one process of a cluster: a command for an
// aggregate the remote says this process does not own is sent to its
// owner. Every type then needs a Commands registry.
func WithRemote(r Remote) RuntimeOption { return func(rt *Runtime) { rt.remote = r } }

// Receive runs a command another process sent to this one, its owner,
// and returns the result encoded. It does not ask the Remote again: the
// sender's router chose this process, and the receiving one checked it.
func (rt *Runtime) Receive(ctx context.Context, cmd RemoteCommand) (RemoteResult, error) {
	rt.gate.RLock()
	t, ok := rt.types[cmd.Type]
	rt.gate.RUnlock()
	if !ok {
		return RemoteResult{}, fmt.Errorf("%w: %s", ErrUnknownType, persistence.Quote(cmd.Type))
	}
	if !cmd.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, cmd.Deadline)
		defer cancel()
	}
	return t.receive(ctx, cmd)
}

// remoteTo returns the remote to send a command for id to, or nil when
// it runs here.
func (h *host[S, C, E, Env]) remoteTo(id string) Remote {
	if r := h.rt.remote; r != nil && !r.Owns(h.def.Type, id) {
		return r
	}
	return nil
}

// sendRemote sends a command (or, with query, asks for the state) to the
// owner of id and decodes its result.
func (h *host[S, C, E, Env]) sendRemote(ctx context.Context, r Remote, m *envelope[S, C, E]) (Result[S, E], error) {
	def := &h.def
	if err := h.validID(m.id); err != nil {
		return Result[S, E]{}, err
	}
	stream := streamName(def.Type, m.id)
	rc := RemoteCommand{Type: def.Type, ID: m.id, Query: m.query, CommandID: m.commandID, Metadata: m.metadata, Timer: m.timer}
	if d, ok := ctx.Deadline(); ok {
		rc.Deadline = d
	}
	if !m.query {
		data, err := def.Commands.Marshal(m.cmd)
		if err != nil {
			return Result[S, E]{}, fmt.Errorf("%w: type %s cannot send %T to another process: %w", ErrInvalidDefinition, def.Type, m.cmd, err)
		}
		rc.Command = data
	}
	res, err := r.Send(ctx, rc)
	if err != nil {
		return Result[S, E]{}, err
	}
	out := Result[S, E]{Version: res.Version, Position: res.Position, Duplicate: res.Duplicate}
	for _, data := range res.Events {
		e, err := persistence.Decode[E](def.Events, data)
		if err != nil {
			return Result[S, E]{}, fmt.Errorf("%w: an event from the owner of %s: %w", ErrCorrupt, stream, err)
		}
		out.Events = append(out.Events, e)
	}
	state, ok, err := def.Snapshots.Decode(persistence.Snapshot{StreamID: stream, Version: res.Version, SchemaVersion: res.StateSchemaVersion, Data: res.State})
	switch {
	case err != nil:
		return Result[S, E]{}, fmt.Errorf("%w: the state from the owner of %s: %w", ErrCorrupt, stream, err)
	case !ok:
		return Result[S, E]{}, fmt.Errorf("%w: the owner of %s encodes its state at schema version %d", ErrCorrupt, stream, res.StateSchemaVersion)
	}
	out.State = state
	return out, nil
}

// receive runs a command sent from another process, here.
func (t *Type[S, C, E, Env]) receive(ctx context.Context, rc RemoteCommand) (RemoteResult, error) {
	def := &t.h.def
	m := &envelope[S, C, E]{id: rc.ID, query: rc.Query, commandID: rc.CommandID, metadata: rc.Metadata}
	if rc.Timer != nil {
		tm := *rc.Timer
		tm.Owner, tm.ID = def.Type, rc.ID // the firing's aggregate is this one
		m.timer = &tm
	}
	if !rc.Query {
		if def.Commands == nil {
			return RemoteResult{}, fmt.Errorf("%w: type %s has no Commands registry", ErrInvalidDefinition, def.Type)
		}
		cmd, err := persistence.Decode[C](def.Commands, rc.Command)
		if err != nil {
			if errors.Is(err, persistence.ErrCorrupt) || errors.Is(err, persistence.ErrUnknownEventType) {
				err = fmt.Errorf("%w: %w", persistence.ErrInvalidInput, err) // the sender's bytes: its fault
			}
			return RemoteResult{}, fmt.Errorf("type %s: decode command %s: %w", def.Type, persistence.Quote(rc.Command.Type), err)
		}
		m.cmd = cmd
	}
	res, err := t.h.request(ctx, m)
	if err != nil {
		return RemoteResult{}, err
	}
	out := RemoteResult{Version: res.Version, Position: res.Position, Duplicate: res.Duplicate}
	for _, e := range res.Events {
		data, err := def.Events.Marshal(e)
		if err != nil {
			return RemoteResult{}, fmt.Errorf("%w: type %s: encode event %T: %w", ErrInvalidDefinition, def.Type, e, err)
		}
		out.Events = append(out.Events, data)
	}
	snap, err := def.Snapshots.Encode(t.Stream(rc.ID), res.Version, res.State)
	if err != nil {
		return RemoteResult{}, fmt.Errorf("%w: type %s: encode state: %w", ErrInvalidDefinition, def.Type, err)
	}
	out.State, out.StateSchemaVersion = snap.Data, snap.SchemaVersion
	return out, nil
}

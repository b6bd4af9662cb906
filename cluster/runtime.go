package cluster

import (
	"context"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster/wire"
	"github.com/composable-go/composable/persistence"
)

// The router as the aggregate runtime's Remote, and the runtime as the
// router's Local: build the router, give the runtime
// aggregate.WithRemote(router.Remote()), then router.Serve(runtime).

// Remote returns the router as an aggregate.Remote.
func (r *Router) Remote() aggregate.Remote { return remote{r} }

// Serve runs the commands this node owns on rt.
func (r *Router) Serve(rt *aggregate.Runtime) {
	local := Local(func(ctx context.Context, cmd *wire.Command) *wire.Reply {
		res, err := rt.Receive(ctx, fromWire(cmd))
		if err != nil {
			return &wire.Reply{Error: wire.EncodeError(err)}
		}
		return toWire(res)
	})
	r.local.Store(&local)
}

// Owns reports whether this node owns typ/id under its view.
func (r *Router) Owns(typ, id string) bool {
	self, member := r.cfg.Self()
	owner, ok := Owner(r.cfg.View(), typ, id)
	return member && ok && owner.ID == self.ID
}

type remote struct{ r *Router }

func (rm remote) Owns(typ, id string) bool { return rm.r.Owns(typ, id) }

func (rm remote) Epoch() uint64 {
	if rm.r.cfg.Epoch == nil {
		return 0
	}
	return rm.r.cfg.Epoch()
}

func (rm remote) Send(ctx context.Context, cmd aggregate.RemoteCommand) (aggregate.RemoteResult, error) {
	reply, err := rm.r.Send(ctx, commandToWire(cmd))
	if err != nil {
		return aggregate.RemoteResult{}, err
	}
	if e := reply.GetError(); e != nil {
		return aggregate.RemoteResult{}, wire.DecodeError(e)
	}
	return fromWireReply(reply), nil
}

func commandToWire(c aggregate.RemoteCommand) *wire.Command {
	w := &wire.Command{
		AggregateType: c.Type, AggregateId: c.ID, CommandType: c.Command.Type, SchemaVersion: int32(c.Command.SchemaVersion),
		Data: c.Command.Data, CommandId: c.CommandID, Metadata: c.Metadata, Query: c.Query,
	}
	if !c.Deadline.IsZero() {
		w.DeadlineUnixNano = c.Deadline.UnixNano()
	}
	if t := c.Timer; t != nil {
		w.Timer = &wire.Timer{Name: t.Name, DueUnixNano: t.Due.UnixNano(), FireId: t.FireID}
	}
	return w
}

func fromWire(w *wire.Command) aggregate.RemoteCommand {
	c := aggregate.RemoteCommand{
		Type: w.GetAggregateType(), ID: w.GetAggregateId(), Query: w.GetQuery(), CommandID: w.GetCommandId(), Metadata: w.GetMetadata(),
		Command: persistence.EventData{Type: w.GetCommandType(), SchemaVersion: int(w.GetSchemaVersion()), Data: w.GetData()},
	}
	if d := w.GetDeadlineUnixNano(); d > 0 {
		c.Deadline = time.Unix(0, d)
	}
	if t := w.GetTimer(); t != nil {
		c.Timer = &persistence.Timer{Owner: c.Type, ID: c.ID, Name: t.GetName(), Due: time.Unix(0, t.GetDueUnixNano()).UTC(), FireID: t.GetFireId()}
	}
	return c
}

func toWire(res aggregate.RemoteResult) *wire.Reply {
	reply := &wire.Reply{Version: res.Version, Position: res.Position, Duplicate: res.Duplicate, State: res.State, StateSchemaVersion: int32(res.StateSchemaVersion)}
	for _, e := range res.Events {
		reply.Events = append(reply.Events, &wire.Event{Id: e.ID, Type: e.Type, SchemaVersion: int32(e.SchemaVersion), Data: e.Data, Metadata: e.Metadata})
	}
	return reply
}

func fromWireReply(w *wire.Reply) aggregate.RemoteResult {
	res := aggregate.RemoteResult{Version: w.GetVersion(), Position: w.GetPosition(), Duplicate: w.GetDuplicate(), State: w.GetState(), StateSchemaVersion: int(w.GetStateSchemaVersion())}
	for _, e := range w.GetEvents() {
		res.Events = append(res.Events, persistence.EventData{ID: e.GetId(), Type: e.GetType(), SchemaVersion: int(e.GetSchemaVersion()), Data: e.GetData(), Metadata: e.GetMetadata()})
	}
	return res
}

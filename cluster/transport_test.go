//go:build !race

// protoactor's remote package has data races of its own that the race
// detector reports (notes/cluster.md): these tests start it, so they are
// built without -race only, and .ci/run runs them in a step of their own.

package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// TestCommandsCrossProtoactorRemote: two nodes, each with its own actor
// system and runtime, carry commands to each other over protoactor remote
// on loopback; every command runs once, on its owner; a node whose
// transport closed is unreachable within the caller's deadline.
func TestCommandsCrossProtoactorRemote(t *testing.T) {
	store := memory.New()
	type proc struct {
		transport *cluster.RemoteTransport
		self      membership.Member
		router    *cluster.Router
		accounts  *aggregate.Type[account, accountCommand, accountEvent, struct{}]
	}
	var procs []*proc
	var view []membership.Member
	for i := range 2 {
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
		t.Cleanup(func() { _ = sys.Close() })
		tr, err := cluster.StartRemoteTransport(ctxFor(t), sys.ActorSystem(), "127.0.0.1", 0)
		if err != nil {
			t.Fatal(err)
		}
		self := membership.Member{Name: fmt.Sprint("node-", i), Address: tr.Address(), Kinds: []string{"account"}, Generation: int64(i + 1)}
		self.ID = membership.MemberID(self.Name, self.Generation)
		view = append(view, self)
		procs = append(procs, &proc{transport: tr, self: self})
	}
	for _, p := range procs {
		r, err := cluster.NewRouter(cluster.RouterConfig{
			Self: func() (membership.Member, bool) { return p.self, true }, View: func() []membership.Member { return view },
			Transport: p.transport, Logger: testkit.QuietLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger())) // the runtime's own
		t.Cleanup(func() { _ = sys.Close() })
		rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), aggregate.WithRemote(r.Remote()))
		t.Cleanup(func() { _ = rt.Close() })
		if p.accounts, err = aggregate.Register(rt, accountDefinition(), aggregate.Options{}); err != nil {
			t.Fatal(err)
		}
		r.Serve(rt)
		if err := p.transport.Serve(r); err != nil {
			t.Fatal(err)
		}
		p.router = r
	}
	ctx := ctxFor(t)
	for i := range 40 {
		id := fmt.Sprint("acc-", i)
		for j, p := range procs {
			if res, err := p.accounts.Send(ctx, id, credit{Amount: j + 1}); err != nil || len(res.Events) != 1 {
				t.Fatalf("credit of %s from %s: %+v, %v", id, p.self.ID, res, err)
			}
		}
		res, err := procs[0].accounts.State(ctx, id)
		if err != nil || res.State.Balance != 3 || res.Version != 2 {
			t.Fatalf("%s: %+v, %v", id, res, err)
		}
	}
	live := procs[0].accounts.Live() + procs[1].accounts.Live()
	if live != 40 || procs[0].accounts.Live() == 0 || procs[1].accounts.Live() == 0 {
		t.Fatalf("accounts live: %d and %d, want 40 in all, on both", procs[0].accounts.Live(), procs[1].accounts.Live())
	}
	// A rejection crosses the wire with its meaning.
	for i := range 40 {
		id := fmt.Sprint("acc-", i)
		if owner, _ := cluster.Owner(view, "account", id); owner.ID == procs[1].self.ID {
			if _, err := procs[0].accounts.Send(ctx, id, debit{Amount: 1000}); !errors.Is(err, aggregate.ErrRejected) {
				t.Fatalf("a rejection over remote = %v", err)
			}
			// The owner's transport closes: the caller's deadline ends the call.
			if err := procs[1].transport.Close(); err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if _, err := procs[0].accounts.Send(short, id, credit{Amount: 1}); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a send to a node that is gone = %v, want the deadline", err)
			}
			break
		}
	}
	if err := procs[0].transport.Close(); err != nil {
		t.Fatal(err)
	}
}

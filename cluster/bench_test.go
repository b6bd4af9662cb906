//go:build !race

package cluster_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// BenchmarkRemoteHop measures what a command costs when its aggregate
// lives on another node, over protoactor remote on loopback, next to one
// whose aggregate lives here, in the same run, on the memory store:
//
//	go test -run '^$' -bench RemoteHop ./cluster/
//
// One caller sends one command at a time, so the figures are latencies;
// hop-us is the difference per command.
func BenchmarkRemoteHop(b *testing.B) {
	store := memory.New()
	ctx := context.Background()
	var view []membership.Member
	var transports []*cluster.RemoteTransport
	for i := range 2 {
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
		b.Cleanup(func() { _ = sys.Close() })
		tr, err := cluster.StartRemoteTransport(ctx, sys.ActorSystem(), "127.0.0.1", 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		m := membership.Member{Name: fmt.Sprint("node-", i), Address: tr.Address(), Kinds: []string{"account"}, Generation: int64(i + 1)}
		m.ID = membership.MemberID(m.Name, m.Generation)
		view = append(view, m)
		transports = append(transports, tr)
	}
	var accounts []*aggregate.Type[account, accountCommand, accountEvent, struct{}]
	for i, tr := range transports {
		self := view[i]
		r, err := cluster.NewRouter(cluster.RouterConfig{Self: func() (membership.Member, bool) { return self, true },
			View: func() []membership.Member { return view }, Transport: tr, Logger: testkit.QuietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
		b.Cleanup(func() { _ = sys.Close() })
		rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), aggregate.WithRemote(r.Remote()))
		b.Cleanup(func() { _ = rt.Close() })
		a, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{})
		if err != nil {
			b.Fatal(err)
		}
		r.Serve(rt)
		if err := tr.Serve(r); err != nil {
			b.Fatal(err)
		}
		accounts = append(accounts, a)
	}
	var local, remote string
	for i := 0; local == "" || remote == ""; i++ {
		id := fmt.Sprint("acc-", i)
		if owner, _ := cluster.Owner(view, "account", id); owner.ID == view[0].ID {
			local = id
		} else {
			remote = id
		}
	}
	run := func(id string) float64 {
		for range 100 { // warm: activation, connections
			if _, err := accounts[0].Send(ctx, id, credit{Amount: 1}); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for range b.N {
			if _, err := accounts[0].Send(ctx, id, credit{Amount: 1}); err != nil {
				b.Fatal(err)
			}
		}
		return float64(b.Elapsed().Microseconds()) / float64(b.N)
	}
	l := run(local)
	r := run(remote)
	b.ReportMetric(l, "local-us")
	b.ReportMetric(r, "remote-us")
	b.ReportMetric(r-l, "hop-us")
}

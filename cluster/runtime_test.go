package cluster_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/testkit"
)

// A small account aggregate, with its commands registered so that they
// can cross to another process.
type (
	account struct {
		Balance int
		Credits []string
	}
	credit         struct{ Amount int }
	debit          struct{ Amount int }
	remind         struct{ At time.Time }
	ring           struct{}
	credited       struct{ Amount int }
	debited        struct{ Amount int }
	reminderSet    struct{ At time.Time }
	rang           struct{}
	accountCommand any
	accountEvent   any
)

var errInsufficient = errors.New("insufficient funds")

func accountDefinition() aggregate.Definition[account, accountCommand, accountEvent, struct{}] {
	events, commands := persistence.NewRegistry(), persistence.NewRegistry()
	for _, err := range []error{
		persistence.Register[credited](events, "account.credited"), persistence.Register[debited](events, "account.debited"),
		persistence.Register[reminderSet](events, "account.reminder-set"), persistence.Register[rang](events, "account.rang"),
		persistence.Register[credit](commands, "account.credit"), persistence.Register[debit](commands, "account.debit"),
		persistence.Register[remind](commands, "account.remind"), persistence.Register[ring](commands, "account.ring"),
	} {
		if err != nil {
			panic(err)
		}
	}
	return aggregate.Definition[account, accountCommand, accountEvent, struct{}]{
		Type: "account", Events: events, Commands: commands,
		Handle: func(s account, c accountCommand, _ struct{}) (aggregate.Decision[accountCommand, accountEvent], error) {
			switch c := c.(type) {
			case credit:
				return aggregate.Emit[accountCommand, accountEvent](credited(c)), nil
			case debit:
				if c.Amount > s.Balance {
					return aggregate.Decision[accountCommand, accountEvent]{}, errInsufficient
				}
				return aggregate.Emit[accountCommand, accountEvent](debited(c)), nil
			case remind:
				return aggregate.Emit[accountCommand, accountEvent](reminderSet(c)).Arm("remind", c.At), nil
			case ring:
				return aggregate.Emit[accountCommand, accountEvent](rang{}), nil
			}
			return aggregate.Decision[accountCommand, accountEvent]{}, fmt.Errorf("unknown command %T", c)
		},
		Apply: func(s *account, e accountEvent) {
			switch e := e.(type) {
			case credited:
				s.Balance += e.Amount
				s.Credits = append(s.Credits, fmt.Sprint(e.Amount))
			case debited:
				s.Balance -= e.Amount
			}
		},
		Clone:   func(s account) account { s.Credits = append([]string(nil), s.Credits...); return s },
		OnTimer: func(string, time.Time) accountCommand { return ring{} },
	}
}

// process is one node: its own actor system and runtime, one store shared
// by all (as PostgreSQL would be).
type process struct {
	node     *node
	accounts *aggregate.Type[account, accountCommand, accountEvent, struct{}]
}

func newProcesses(t *testing.T, n int) []*process {
	t.Helper()
	_, nodes := newCluster(t, n)
	store := memory.New()
	var out []*process
	for _, nd := range nodes {
		for i := range nd.view { // these nodes host accounts
			nd.view[i].Kinds = []string{"account"}
		}
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
		t.Cleanup(func() { _ = sys.Close() })
		rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), aggregate.WithRemote(nd.router.Remote()))
		t.Cleanup(func() { _ = rt.Close() })
		accounts, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nd.router.Serve(rt)
		out = append(out, &process{node: nd, accounts: accounts})
	}
	return out
}

// TestSendWorksUnchangedOnEveryNode: Type.Send and State on any of three
// runtimes reach the one owner of each account: every credit is applied
// once, in one stream, and every node reads the same state — decoded,
// with the events, across processes.
func TestSendWorksUnchangedOnEveryNode(t *testing.T) {
	procs := newProcesses(t, 3)
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	for i := range 30 {
		for j, p := range procs {
			wg.Go(func() {
				res, err := p.accounts.Send(ctx, fmt.Sprint("acc-", i), credit{Amount: j + 1})
				if err != nil || len(res.Events) != 1 || res.Events[0] != (credited{Amount: j + 1}) {
					t.Errorf("credit of acc-%d from node %d: %+v, %v", i, j, res, err)
				}
			})
		}
	}
	wg.Wait()
	owns := map[string]int{}
	for i := range 30 {
		owner, _ := cluster.Owner(procs[0].node.View(), "account", fmt.Sprint("acc-", i))
		owns[owner.ID]++
	}
	for _, p := range procs { // each account is live on its owner only
		if live := p.accounts.Live(); live != owns[p.node.self.ID] {
			t.Fatalf("%s has %d accounts live, owns %d", p.node.self.ID, live, owns[p.node.self.ID])
		}
	}
	for i := range 30 {
		id := fmt.Sprint("acc-", i)
		owner, _ := cluster.Owner(procs[0].node.View(), "account", id)
		for _, p := range procs {
			res, err := p.accounts.State(ctx, id)
			if err != nil || res.State.Balance != 6 || len(res.State.Credits) != 3 || res.Version != 3 {
				t.Fatalf("%s read on %s (owner %s): %+v, %v", id, p.node.self.ID, owner.ID, res, err)
			}
		}
	}
}

// TestErrorsAndDuplicatesCrossNodes: a rejection on the owner matches
// ErrRejected and the cause's text on the sender; a command id sent twice
// from two nodes runs once; a command of a type not registered refuses to
// leave the process.
func TestErrorsAndDuplicatesCrossNodes(t *testing.T) {
	procs := newProcesses(t, 2)
	ctx := ctxFor(t)
	var id string
	var sender, owner *process
	for i := 0; sender == nil; i++ {
		id = fmt.Sprint("acc-", i)
		o, _ := cluster.Owner(procs[0].node.View(), "account", id)
		if o.ID == procs[1].node.self.ID {
			sender, owner = procs[0], procs[1]
		}
	}
	_, err := sender.accounts.Send(ctx, id, debit{Amount: 5})
	if !errors.Is(err, aggregate.ErrRejected) || !strings.Contains(err.Error(), errInsufficient.Error()) {
		t.Fatalf("a rejection on the owner = %v, want ErrRejected with the cause's text", err)
	}
	first, err := sender.accounts.Send(ctx, id, credit{Amount: 10}, aggregate.WithCommandID("pay-1"))
	if err != nil || first.Duplicate {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := owner.accounts.Send(ctx, id, credit{Amount: 10}, aggregate.WithCommandID("pay-1"))
	if err != nil || !again.Duplicate || again.Version != first.Version {
		t.Fatalf("the same command id from the owner: %+v, %v", again, err)
	}
	if st, _ := sender.accounts.State(ctx, id); st.State.Balance != 10 {
		t.Fatalf("balance %d, want 10: the command ran twice", st.State.Balance)
	}
	type unregistered struct{}
	if _, err := sender.accounts.Send(ctx, id, unregistered{}); !errors.Is(err, aggregate.ErrInvalidDefinition) {
		t.Fatalf("an unregistered command = %v, want ErrInvalidDefinition", err)
	}
	if _, err := sender.accounts.Send(ctx, "bad\x00id", credit{Amount: 1}); !errors.Is(err, aggregate.ErrInvalidID) {
		t.Fatalf("a bad id = %v, want ErrInvalidID before anything is sent", err)
	}
}

// TestRegisterInAClusterNeedsCommands: a runtime in a cluster refuses a
// type without a Commands registry.
func TestRegisterInAClusterNeedsCommands(t *testing.T) {
	_, nodes := newCluster(t, 1)
	sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	rt := aggregate.NewRuntime(sys, memory.New(), aggregate.WithLogger(testkit.QuietLogger()), aggregate.WithRemote(nodes[0].router.Remote()))
	t.Cleanup(func() { _ = rt.Close() })
	def := accountDefinition()
	def.Commands = nil
	if _, err := aggregate.Register(rt, def, aggregate.Options{}); !errors.Is(err, aggregate.ErrInvalidDefinition) {
		t.Fatalf("Register without Commands = %v, want ErrInvalidDefinition", err)
	}
}

// TestTimersFireOnTheirOwner: durable timers armed through every node
// fire once each, sent by the one scheduler (the runtimes share a lease)
// to the owner of their account — the scheduler's node never activates an
// account it does not own.
func TestTimersFireOnTheirOwner(t *testing.T) {
	_, nodes := newCluster(t, 3)
	store := memory.New()
	clock := testkit.NewManualClock(time.Unix(0, 0))
	leases := memory.NewLeases()
	var procs []*process
	for _, nd := range nodes {
		for i := range nd.view {
			nd.view[i].Kinds = []string{"account"}
		}
		sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
		t.Cleanup(func() { _ = sys.Close() })
		rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), aggregate.WithRemote(nd.router.Remote()),
			aggregate.WithClock(clock), aggregate.WithLease(leases))
		t.Cleanup(func() { _ = rt.Close() })
		accounts, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		nd.router.Serve(rt)
		procs = append(procs, &process{node: nd, accounts: accounts})
	}
	ctx := ctxFor(t)
	const n = 30
	for i := range n {
		if _, err := procs[i%3].accounts.Send(ctx, fmt.Sprint("acc-", i), remind{At: time.Unix(60, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	testkit.Eventually(t, 10*time.Second, func() bool {
		rows, _ := store.Timers(ctx, "account", persistence.Timer{}, 10)
		return len(rows) == 0
	})
	owns := map[string]int{}
	for i := range n {
		id := fmt.Sprint("acc-", i)
		events, err := store.Load(ctx, "account/"+id, 1)
		if err != nil || len(events) != 2 || events[1].Type != "account.rang" {
			t.Fatalf("%s: %d events (%v), want the reminder and one ring", id, len(events), err)
		}
		owner, _ := cluster.Owner(nodes[0].View(), "account", id)
		owns[owner.ID]++
	}
	for _, p := range procs {
		if live := p.accounts.Live(); live != owns[p.node.self.ID] {
			t.Fatalf("%s has %d accounts live, owns %d: a firing ran off its owner", p.node.self.ID, live, owns[p.node.self.ID])
		}
	}
}

// TestOwnershipThatComesBackReadsAgain: an account owned by node 0 moves
// to node 1 while node 0 is out of the views (a pause longer than its
// TTL), takes writes there, and comes back: node 0's activation catches up
// from the store before it answers, so reads see those writes and a debit
// the new balance covers is not rejected on a stale one.
func TestOwnershipThatComesBackReadsAgain(t *testing.T) {
	procs := newProcesses(t, 3)
	ctx := ctxFor(t)
	full := procs[0].node.View()
	var id string
	for i := 0; id == ""; i++ {
		if o, _ := cluster.Owner(full, "account", fmt.Sprint("acc-", i)); o.ID == procs[0].node.self.ID {
			id = fmt.Sprint("acc-", i)
		}
	}
	if _, err := procs[0].accounts.Send(ctx, id, credit{Amount: 1}); err != nil {
		t.Fatal(err)
	}
	without := append([]membership.Member(nil), full[1:]...)
	for _, p := range procs {
		p.node.setView(without)
	}
	for range 2 {
		if _, err := procs[1].accounts.Send(ctx, id, credit{Amount: 10}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		p.node.setView(full)
	}
	if st, err := procs[1].accounts.State(ctx, id); err != nil || st.Version != 3 || st.State.Balance != 21 {
		t.Fatalf("read through the owner that came back: %+v, %v; want version 3, balance 21", st, err)
	}
	if _, err := procs[2].accounts.Send(ctx, id, debit{Amount: 15}); err != nil {
		t.Fatalf("a debit the balance covers: %v", err)
	}
}

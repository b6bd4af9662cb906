package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/cluster/membership"
	memstore "github.com/composable-go/composable/cluster/membership/memory"
	"github.com/composable-go/composable/cluster/wire"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" { // a node of a multi-process test
		os.Exit(runChild())
	}
	// protoactor's remote leaves its gRPC client connections, and its
	// endpoint writers' reconnection attempts to a killed peer, running
	// after its Shutdown (the tests without -race only); its dead-letter
	// throttle lives a second. Its goroutines, not ours.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*addrConn).resetTransportAndUnlock"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/remote.(*endpointWriter).initialize"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// node is a router with its own view of the members, and what it ran.
type node struct {
	self    membership.Member
	router  *cluster.Router
	mu      sync.Mutex
	view    []membership.Member
	changed chan struct{}
	ran     map[string]int // by "type/id", commands run here
	epoch   uint64         // counts view changes
	down    atomic.Bool    // calls to it fail: the process is gone
	hang    atomic.Bool    // calls to it never answer: the process is frozen
	held    chan struct{}  // if set, commands it runs wait for it to close
	started chan string    // if set, told of each command it starts running
}

func (n *node) View() []membership.Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.view
}

func (n *node) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// setView gives the node a new view and wakes its callers.
func (n *node) setView(v []membership.Member) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.view = v
	n.epoch++
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *node) Epoch() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.epoch
}

func (n *node) runs(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ran[key]
}

// network carries commands between nodes as protobuf bytes.
type network struct{ nodes map[string]*node }

func (w *network) Call(ctx context.Context, to membership.Member, cmd *wire.Command) (*wire.Reply, error) {
	target := w.nodes[to.ID]
	if target == nil || target.down.Load() {
		return nil, fmt.Errorf("dial %s: connection refused", to.Address)
	}
	if target.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	var in wire.Command
	if err := proto.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	// The other node runs the command whatever happens to the caller, as
	// a real one does; the caller waits for the answer or its ctx.
	answer := make(chan []byte, 1)
	go func() {
		out, _ := proto.Marshal(target.router.Receive(context.Background(), &in))
		answer <- out
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case out := <-answer:
		var reply wire.Reply
		return &reply, proto.Unmarshal(out, &reply)
	}
}

// newCluster starts n nodes hosting "order", each seeing them all.
func newCluster(t *testing.T, n int) (*network, []*node) {
	t.Helper()
	w := &network{nodes: map[string]*node{}}
	var view []membership.Member
	for i := range n {
		m := membership.Member{Name: fmt.Sprint("node-", i), Address: fmt.Sprint("127.0.0.1:", 9000+i), Kinds: []string{"order"}, Generation: int64(i + 1)}
		m.ID = membership.MemberID(m.Name, m.Generation)
		view = append(view, m)
	}
	var nodes []*node
	for _, m := range view {
		nd := &node{self: m, view: view, changed: make(chan struct{}), ran: map[string]int{}}
		r, err := cluster.NewRouter(cluster.RouterConfig{
			Self: func() (membership.Member, bool) { return nd.self, true }, View: nd.View, Changed: nd.Changed, Epoch: nd.Epoch,
			Transport: w, MaxInFlight: 4, Logger: testkit.QuietLogger(),
			Local: func(_ context.Context, cmd *wire.Command) *wire.Reply {
				if nd.started != nil {
					nd.started <- cmd.AggregateId
				}
				if nd.held != nil {
					<-nd.held
				}
				nd.mu.Lock()
				defer nd.mu.Unlock()
				nd.ran[cmd.AggregateType+"/"+cmd.AggregateId]++
				return &wire.Reply{Version: int64(nd.ran[cmd.AggregateType+"/"+cmd.AggregateId])}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.router = r
		w.nodes[m.ID] = nd
		nodes = append(nodes, nd)
	}
	return w, nodes
}

func command(id string) *wire.Command {
	return &wire.Command{AggregateType: "order", AggregateId: id, CommandType: "order.touch", SchemaVersion: 1, Data: []byte("{}")}
}

// TestCommandsRunOnTheirOwner: 500 ids sent from every node of three
// each run on the one node that owns them, whichever node they entered.
func TestCommandsRunOnTheirOwner(t *testing.T) {
	_, nodes := newCluster(t, 3)
	ctx := ctxFor(t)
	owned := map[string]int{}
	for i := range 500 {
		id := fmt.Sprint(i)
		owner, ok := cluster.Owner(nodes[0].View(), "order", id)
		if !ok {
			t.Fatal("no owner")
		}
		owned[owner.ID]++
		for _, from := range nodes {
			reply, err := from.router.Send(ctx, command(id))
			if err != nil || reply.GetError() != nil {
				t.Fatalf("send %s from %s: %v %v", id, from.self.ID, err, reply.GetError())
			}
		}
		for _, nd := range nodes {
			want := 0
			if nd.self.ID == owner.ID {
				want = 3
			}
			if got := nd.runs("order/" + id); got != want {
				t.Fatalf("%s ran order/%s %d times, want %d (owner %s)", nd.self.ID, id, got, want, owner.ID)
			}
		}
	}
	for id, n := range owned {
		if n < 100 {
			t.Fatalf("owners %v: %s owns %d of 500", owned, id, n)
		}
	}
}

// TestADeadOwnersCommandsMoveWhenTheViewDoes: while an owner cannot be
// reached, its commands wait — and commands for the others' aggregates go
// through meanwhile, even with its calls in flight hanging; once the view
// drops it, they run on the new owners, each once.
func TestADeadOwnersCommandsMoveWhenTheViewDoes(t *testing.T) {
	_, nodes := newCluster(t, 3)
	ctx := ctxFor(t)
	dead := nodes[2]
	dead.hang.Store(true)
	var deadIDs, liveIDs []string
	for i := 0; len(deadIDs) < 10 || len(liveIDs) < 10; i++ {
		owner, _ := cluster.Owner(nodes[0].View(), "order", fmt.Sprint(i))
		if owner.ID == dead.self.ID {
			deadIDs = append(deadIDs, fmt.Sprint(i))
		} else if owner.ID != nodes[0].self.ID {
			liveIDs = append(liveIDs, fmt.Sprint(i))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(deadIDs))
	for _, id := range deadIDs { // more than the 4 slots of the dead member
		wg.Go(func() {
			reply, err := nodes[0].router.Send(ctx, command(id))
			if err == nil && reply.GetError() != nil {
				err = wire.DecodeError(reply.GetError())
			}
			errs <- err
		})
	}
	for _, id := range liveIDs[:10] {
		if _, err := nodes[0].router.Send(ctx, command(id)); err != nil {
			t.Fatalf("a live member's aggregate waited for the dead one: %v", err)
		}
	}
	// The dead member's record expires: every view drops it.
	view := nodes[0].View()[:2]
	dead.down.Store(true)
	dead.hang.Store(false)
	for _, nd := range nodes[:2] {
		nd.setView(view)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range deadIDs {
		owner, _ := cluster.Owner(view, "order", id)
		total := nodes[0].runs("order/"+id) + nodes[1].runs("order/"+id)
		if total != 1 || dead.runs("order/"+id) != 0 {
			t.Fatalf("order/%s ran %d times on the living (owner now %s), %d on the dead", id, total, owner.ID, dead.runs("order/"+id))
		}
	}
}

// TestViewsThatDifferAgreeThroughNotOwner: a node whose view is stale
// sends to a member that does not own the aggregate under its own, newer
// view; that member runs nothing and answers ErrNotOwner, and the sender
// retries once its view catches up.
func TestViewsThatDifferAgreeThroughNotOwner(t *testing.T) {
	_, nodes := newCluster(t, 3)
	ctx := ctxFor(t)
	full := nodes[0].View()
	// Node 2 has joined, but only nodes 1 and 2 know it yet.
	stale := full[:2]
	nodes[0].setView(stale)
	var id string
	for i := 0; ; i++ {
		newOwner, _ := cluster.Owner(full, "order", fmt.Sprint(i))
		oldOwner, _ := cluster.Owner(stale, "order", fmt.Sprint(i))
		if newOwner.ID == nodes[2].self.ID && oldOwner.ID == nodes[1].self.ID {
			id = fmt.Sprint(i)
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		reply, err := nodes[0].router.Send(ctx, command(id))
		if err == nil && reply.GetError() != nil {
			err = wire.DecodeError(reply.GetError())
		}
		done <- err
	}()
	testkit.Eventually(t, 10*time.Second, func() bool { return nodes[1].runs("order/"+id) == 0 && len(done) == 0 })
	nodes[0].setView(full)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if nodes[1].runs("order/"+id) != 0 || nodes[2].runs("order/"+id) != 1 {
		t.Fatalf("ran %d times on the former owner, %d on the owner", nodes[1].runs("order/"+id), nodes[2].runs("order/"+id))
	}
}

// TestOneDeadlinePerCall: a command whose owner never answers fails when
// its ctx ends, with an error that says so.
func TestOneDeadlinePerCall(t *testing.T) {
	_, nodes := newCluster(t, 2)
	nodes[1].down.Store(true)
	var id string
	for i := 0; ; i++ {
		if owner, _ := cluster.Owner(nodes[0].View(), "order", fmt.Sprint(i)); owner.ID == nodes[1].self.ID {
			id = fmt.Sprint(i)
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := nodes[0].router.Send(ctx, command(id)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to an owner that is gone = %v, want the deadline", err)
	}
	if _, err := nodes[0].router.Send(ctxWithTimeout(t, 100*time.Millisecond), &wire.Command{AggregateType: "invoice", AggregateId: "1", CommandType: "x"}); !errors.Is(err, cluster.ErrNoOwner) {
		t.Fatalf("Send of a type no member hosts = %v, want ErrNoOwner", err)
	}
}

func ctxWithTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestReceiveRefusesHostileAndForeignCommands: a command that fails the
// wire checks, or for an aggregate this node does not own, runs nothing.
func TestReceiveRefusesHostileAndForeignCommands(t *testing.T) {
	_, nodes := newCluster(t, 2)
	ctx := ctxFor(t)
	bad := command("4\x002")
	if reply := nodes[0].router.Receive(ctx, bad); !errors.Is(wire.DecodeError(reply.GetError()), persistence.ErrInvalidInput) {
		t.Fatalf("a NUL id: %v", reply.GetError())
	}
	spoofed := command("1")
	spoofed.Metadata = map[string]string{persistence.MetadataCommandID: "x"}
	if reply := nodes[0].router.Receive(ctx, spoofed); !errors.Is(wire.DecodeError(reply.GetError()), persistence.ErrReservedMetadata) {
		t.Fatalf("reserved metadata: %v", reply.GetError())
	}
	for i := range 50 {
		id := fmt.Sprint(i)
		owner, _ := cluster.Owner(nodes[0].View(), "order", id)
		for _, nd := range nodes {
			err := wire.DecodeError(nd.router.Receive(ctx, command(id)).GetError())
			if owned := owner.ID == nd.self.ID; owned != (err == nil) || (!owned && !errors.Is(err, wire.ErrNotOwner)) {
				t.Fatalf("%s received order/%s (owner %s): %v", nd.self.ID, id, owner.ID, err)
			}
		}
	}
	for _, nd := range nodes {
		for key, n := range nd.ran {
			if owner, _ := cluster.Owner(nd.View(), "order", key[len("order/"):]); owner.ID != nd.self.ID || n != 1 {
				t.Fatalf("%s ran %s %d times (owner %s)", nd.self.ID, key, n, owner.ID)
			}
		}
	}
}

// TestOwnersArePlacedByName: a node that joins again, under a new member
// id and generation, owns the same aggregates; of two records of one name
// the newest counts.
func TestOwnersArePlacedByName(t *testing.T) {
	a1 := membership.Member{Name: "a", ID: "a-1", Generation: 1, Kinds: []string{"order"}}
	b2 := membership.Member{Name: "b", ID: "b-2", Generation: 2, Kinds: []string{"order"}}
	a3 := membership.Member{Name: "a", ID: "a-3", Generation: 3, Kinds: []string{"order"}}
	for i := range 200 {
		id := fmt.Sprint(i)
		before, _ := cluster.Owner([]membership.Member{a1, b2}, "order", id)
		after, _ := cluster.Owner([]membership.Member{b2, a3}, "order", id)
		both, _ := cluster.Owner([]membership.Member{a1, b2, a3}, "order", id)
		if before.Name != after.Name || both.ID == "a-1" {
			t.Fatalf("order/%s: %s before, %s after a rejoined, %s with both records", id, before.ID, after.ID, both.ID)
		}
	}
	if _, ok := cluster.Owner([]membership.Member{{Name: "c", ID: "c-9", Kinds: []string{"invoice"}}}, "order", "1"); ok {
		t.Fatal("an owner for a type nobody hosts")
	}
}

// TestRoutingFollowsMembership: routers over real memberships (the memory
// store) route to the owners the members see; when a node leaves, the
// others' views drop it at once and its aggregates run on them.
func TestRoutingFollowsMembership(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := memstore.New(clock)
	w := &network{nodes: map[string]*node{}}
	var members []*membership.Membership
	var nodes []*node
	for i := range 3 {
		nd := &node{ran: map[string]int{}, changed: make(chan struct{})}
		m, err := membership.Start(ctxFor(t), membership.Config{Store: store, Name: fmt.Sprint("node-", i), Address: fmt.Sprint("127.0.0.1:", 9100+i),
			Kinds: []string{"order"}, TTL: 3 * time.Second, Clock: clock, Logger: testkit.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		nd.self, _ = m.Self()
		r, err := cluster.NewRouter(cluster.RouterConfig{Self: m.Self, View: m.View, Changed: m.Changed, Epoch: m.Epoch, Transport: w, Logger: testkit.QuietLogger(), Clock: clock,
			Local: func(_ context.Context, cmd *wire.Command) *wire.Reply {
				if nd.started != nil {
					nd.started <- cmd.AggregateId
				}
				if nd.held != nil {
					<-nd.held
				}
				nd.mu.Lock()
				defer nd.mu.Unlock()
				nd.ran[cmd.AggregateType+"/"+cmd.AggregateId]++
				return &wire.Reply{}
			}})
		if err != nil {
			t.Fatal(err)
		}
		nd.router = r
		w.nodes[nd.self.ID] = nd
		members = append(members, m)
		nodes = append(nodes, nd)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		for _, m := range members {
			if len(m.View()) != 3 {
				return false
			}
		}
		return true
	})
	leaving := nodes[2]
	var id string
	for i := 0; ; i++ {
		if owner, _ := cluster.Owner(members[0].View(), "order", fmt.Sprint(i)); owner.ID == leaving.self.ID {
			id = fmt.Sprint(i)
			break
		}
	}
	if _, err := nodes[0].router.Send(ctxFor(t), command(id)); err != nil || leaving.runs("order/"+id) != 1 {
		t.Fatalf("before the leave: %v, ran %d times on its owner", err, leaving.runs("order/"+id))
	}
	if err := members[2].Close(); err != nil {
		t.Fatal(err)
	}
	leaving.down.Store(true)
	testkit.Eventually(t, 10*time.Second, func() bool { return len(members[0].View()) == 2 && len(members[1].View()) == 2 })
	if _, err := nodes[0].router.Send(ctxFor(t), command(id)); err != nil {
		t.Fatal(err)
	}
	if nodes[0].runs("order/"+id)+nodes[1].runs("order/"+id) != 1 {
		t.Fatal("the aggregate of the node that left did not move to a member")
	}
}

// TestAJoinLetsAnInFlightCommandFinish: a command running on its owner
// when a join moves its aggregate to the new member finishes there: the
// owner is still a member, so the sender waits for its answer instead of
// sending the command again — it runs once, without a command id.
func TestAJoinLetsAnInFlightCommandFinish(t *testing.T) {
	_, nodes := newCluster(t, 3)
	ctx := ctxFor(t)
	full := nodes[0].View()
	stale := full[:2]
	var id string
	for i := 0; id == ""; i++ {
		now, _ := cluster.Owner(full, "order", fmt.Sprint(i))
		before, _ := cluster.Owner(stale, "order", fmt.Sprint(i))
		if now.ID == nodes[2].self.ID && before.ID == nodes[1].self.ID {
			id = fmt.Sprint(i)
		}
	}
	for _, nd := range nodes {
		nd.setView(stale)
	}
	nodes[1].held, nodes[1].started = make(chan struct{}), make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := nodes[0].router.Send(ctx, command(id))
		done <- err
	}()
	<-nodes[1].started // running on the old owner
	for _, nd := range nodes {
		nd.setView(full) // node 2 joins: it owns the aggregate now
	}
	close(nodes[1].held)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return nodes[1].runs("order/"+id) == 1 }) // it did run there
	if a, b := nodes[1].runs("order/"+id), nodes[2].runs("order/"+id); a+b != 1 {
		t.Fatalf("the command ran %d times on the old owner and %d on the new one, want once", a, b)
	}
}

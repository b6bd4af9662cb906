//go:build !race

// Separate OS processes, each a node, on loopback and the local
// PostgreSQL. Built without -race only (protoactor's remote has races of
// its own); .ci/run runs these in a step of their own.

package cluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// child is a node process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startChildren starts n node processes on schema, named node-first and
// on, and waits until each is ready.
func startChildren(t *testing.T, schema string, n, first int) []*child {
	t.Helper()
	var out []*child
	for i := first; i < first+n; i++ {
		name := fmt.Sprint("node-", i)
		cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^$") // killed at cleanup, or by the test
		cmd.Env = append(os.Environ(), childEnv+"="+schema+" "+name)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{name: name, cmd: cmd, stdin: stdin}
		t.Cleanup(func() { // never leave a process behind
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		})
		ready := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			ready <- line
			_, _ = io.Copy(io.Discard, stdout)
		}()
		select {
		case line := <-ready:
			if !strings.HasPrefix(line, "READY ") {
				t.Fatalf("%s did not start: %q", name, line)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not start within a minute", name)
		}
		out = append(out, c)
	}
	return out
}

// harness is a cluster of node processes and this process as a node that
// hosts nothing, sending.
type harness struct {
	store    *postgres.Store
	schema   string
	children []*child
	node     *cluster.Node
	accounts *aggregate.Type[account, accountCommand, accountEvent, struct{}]
}

func newHarness(t *testing.T, nodes int) *harness {
	t.Helper()
	pool := pgtest.Pool(t)
	h := &harness{schema: pgtest.Schema(t, pool, "cluster_procs")}
	ctx := ctxFor(t)
	var err error
	if h.store, err = postgres.New(ctx, pool, postgres.WithSchema(h.schema), postgres.WithLogger(testkit.QuietLogger())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.store.Close() })
	h.children = startChildren(t, h.schema, nodes, 0)
	sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	if h.node, err = cluster.Start(ctx, sys, cluster.Config{Name: "client", Members: h.store, TTL: childTTL, Logger: testkit.QuietLogger()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.node.Close() })
	rt := aggregate.NewRuntime(sys, h.store, aggregate.WithLogger(testkit.QuietLogger()), h.node.RuntimeOption())
	t.Cleanup(func() { _ = rt.Close() })
	if h.accounts, err = aggregate.Register(rt, accountDefinition(), aggregate.Options{}); err != nil {
		t.Fatal(err)
	}
	h.waitHosts(t, nodes)
	return h
}

// waitHosts waits until this node sees n members hosting accounts.
func (h *harness) waitHosts(t *testing.T, n int) {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, func() bool { return len(membership.Hosting(h.node.Members(), "account")) == n })
}

const accountsN = 100

// load sends credits with command ids to the accounts from callers until
// the returned stop is called; stop returns the acknowledged command ids.
func (h *harness) load(ctx context.Context, callers int) (stop func() map[string]bool) {
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		seq   atomic.Int64
		done  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for c := range callers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n := seq.Add(1)
				id := fmt.Sprint("acc-", (int(n)*7+c)%accountsN)
				cid := fmt.Sprint("cmd-", n)
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := h.accounts.Send(cctx, id, credit{Amount: 1}, aggregate.WithCommandID(cid))
				cancel()
				if err == nil {
					mu.Lock()
					acked[cid] = true
					mu.Unlock()
				}
			}
		})
	}
	return func() map[string]bool {
		close(done)
		wg.Wait()
		return acked
	}
}

// allAnswer waits until every account answers a read, and returns how
// long that took.
func (h *harness) allAnswer(ctx context.Context, t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range accountsN {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := h.accounts.State(cctx, fmt.Sprint("acc-", i))
		cancel()
		if err != nil {
			t.Fatalf("acc-%d does not answer: %v", i, err)
		}
	}
	return time.Since(start)
}

// verify checks the store: each acknowledged command once, no command
// twice, versions without gaps.
func (h *harness) verify(ctx context.Context, t *testing.T, acked map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for i := range accountsN {
		events, err := h.store.Load(ctx, fmt.Sprint("account/acc-", i), 1)
		if errors.Is(err, persistence.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range events {
			if e.Version != int64(j+1) {
				t.Fatalf("account/acc-%d: version %d at %d", i, e.Version, j)
			}
			seen[e.Metadata[persistence.MetadataCommandID]]++
		}
	}
	var lost, twice []string
	for cid := range acked {
		if seen[cid] == 0 {
			lost = append(lost, cid)
		}
	}
	for cid, n := range seen {
		if n > 1 {
			twice = append(twice, cid)
		}
	}
	slices.Sort(lost)
	if len(lost) > 0 || len(twice) > 0 {
		t.Fatalf("%d acknowledged commands lost (%v), %d applied twice (%v)", len(lost), lost[:min(len(lost), 5)], len(twice), twice[:min(len(twice), 5)])
	}
	if len(acked) < 100 {
		t.Fatalf("only %d commands acknowledged: the load did not run", len(acked))
	}
}

// TestProcessesSurviveAKill: three node processes host 100 accounts;
// this process — a node that hosts none — sends credits with command ids
// from 16 callers while one node is killed with SIGKILL. Every command
// acknowledged is in the store exactly once, no command is applied twice,
// and every account answers again after the dead node's membership
// expired.
func TestProcessesSurviveAKill(t *testing.T) {
	h := newHarness(t, 3)
	ctx := ctxFor(t)
	stop := h.load(ctx, 16)
	time.Sleep(time.Second) // load before the kill (a test's pacing, not a wait for a condition)
	killedAt := time.Now()
	if err := h.children[2].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.allAnswer(ctx, t)
	servedAgain := time.Since(killedAt)
	time.Sleep(500 * time.Millisecond) // load after the recovery
	acked := stop()
	t.Logf("every account answered %v after the kill; %d commands acknowledged", servedAgain, len(acked))
	if servedAgain > childTTL+5*time.Second {
		t.Errorf("accounts answered again only %v after the kill, TTL %v", servedAgain, childTTL)
	}
	h.verify(ctx, t, acked)
}

// TestAFrozenProcessRejoins: a node frozen with SIGSTOP for two TTLs loses
// its membership; the others take its accounts; thawed, it joins again
// under a new generation and hosts again. Nothing acknowledged is lost or
// applied twice.
func TestAFrozenProcessRejoins(t *testing.T) {
	h := newHarness(t, 3)
	ctx := ctxFor(t)
	frozen := h.children[2]
	before := generationOf(h.node.Members(), frozen.name)
	stop := h.load(ctx, 16)
	time.Sleep(time.Second)
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	h.allAnswer(ctx, t) // the others took its accounts
	time.Sleep(2 * childTTL)
	if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return generationOf(h.node.Members(), frozen.name) > before })
	time.Sleep(time.Second) // load with it back
	acked := stop()
	t.Logf("%d commands acknowledged; %s rejoined at generation %d (was %d)", len(acked), frozen.name, generationOf(h.node.Members(), frozen.name), before)
	h.verify(ctx, t, acked)
}

// TestAJoinUnderLoad: a fourth node joins while commands flow; it takes
// about a quarter of the accounts, and nothing acknowledged is lost or
// applied twice.
func TestAJoinUnderLoad(t *testing.T) {
	h := newHarness(t, 3)
	ctx := ctxFor(t)
	stop := h.load(ctx, 16)
	time.Sleep(time.Second)
	h.children = append(h.children, startChildren(t, h.schema, 1, 3)...)
	h.waitHosts(t, 4)
	time.Sleep(time.Second) // load with four
	acked := stop()
	moved := 0
	for i := range accountsN {
		if owner, _ := cluster.Owner(h.node.Members(), "account", fmt.Sprint("acc-", i)); owner.Name == "node-3" {
			moved++
		}
	}
	t.Logf("%d commands acknowledged; the new node owns %d of %d accounts", len(acked), moved, accountsN)
	if moved == 0 || moved > accountsN/2 {
		t.Fatalf("the new node owns %d of %d accounts", moved, accountsN)
	}
	h.verify(ctx, t, acked)
}

// generationOf returns the generation of the member named name, 0 if
// none.
func generationOf(members []membership.Member, name string) int64 {
	for _, m := range members {
		if m.Name == name {
			return m.Generation
		}
	}
	return 0
}

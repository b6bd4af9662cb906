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
	"testing"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
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

// startChildren starts n node processes on schema and waits until each
// is ready.
func startChildren(t *testing.T, schema string, n int) []*child {
	t.Helper()
	var out []*child
	for i := range n {
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

// TestProcessesSurviveAKill: three node processes host 100 accounts;
// this process — a node that hosts none — sends credits with command ids
// from 16 callers while one node is killed with SIGKILL. Every command
// acknowledged is in the store exactly once, no command is applied twice,
// and every account answers again after the dead node's membership
// expired.
func TestProcessesSurviveAKill(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "cluster_kill")
	ctx := ctxFor(t)
	store, err := postgres.New(ctx, pool, postgres.WithSchema(schema), postgres.WithLogger(testkit.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	children := startChildren(t, schema, 3)

	sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
	t.Cleanup(func() { _ = sys.Close() })
	node, err := cluster.Start(ctx, sys, cluster.Config{Name: "client", Members: store, TTL: childTTL, Logger: testkit.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), node.RuntimeOption())
	t.Cleanup(func() { _ = rt.Close() })
	accounts, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return len(node.Members()) == 4 })

	const ids, callers = 100, 16
	var (
		mu    sync.Mutex
		acked = map[string]int{} // command id -> amount
		seq   atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for c := range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				id := fmt.Sprint("acc-", (int(n)*7+c)%ids)
				cid := fmt.Sprint("cmd-", n)
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := accounts.Send(cctx, id, credit{Amount: 1}, aggregate.WithCommandID(cid))
				cancel()
				if err == nil {
					mu.Lock()
					acked[cid] = 1
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(time.Second) // load before the kill (a test's pacing, not a wait for a condition)
	killed := children[2]
	killedAt := time.Now()
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Every account answers again: its owner is alive, or the dead one's
	// record expired and another took its accounts.
	var slowest time.Duration
	for i := range ids {
		id := fmt.Sprint("acc-", i)
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := accounts.State(cctx, id)
		cancel()
		if err != nil {
			t.Fatalf("%s after the kill: %v", id, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	servedAgain := time.Since(killedAt)
	time.Sleep(500 * time.Millisecond) // load after the recovery
	close(stop)
	wg.Wait()
	t.Logf("every account answered %v after the kill (slowest read %v); %d commands acknowledged", servedAgain, slowest, len(acked))
	if servedAgain > childTTL+5*time.Second {
		t.Errorf("accounts answered again only %v after the kill, TTL %v", servedAgain, childTTL)
	}

	// The store holds each acknowledged command once, and nothing twice.
	seen := map[string]int{}
	for i := range ids {
		events, err := store.Load(ctx, fmt.Sprint("account/acc-", i), 1)
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

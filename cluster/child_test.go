package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster"
	"github.com/composable-go/composable/persistence/postgres"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/pgtest"
)

// childEnv, when set, makes the test binary a cluster node instead of
// running tests: its value is "schema name". The node hosts accounts on
// the PostgreSQL store in that schema, fenced by its membership, prints
// "READY address" and serves until it is killed or its stdin closes.
const childEnv = "COMPOSABLE_CLUSTER_NODE"

// childTTL is the membership TTL of the multi-process tests' nodes.
const childTTL = 2 * time.Second

func runChild() int {
	schema, name, _ := strings.Cut(os.Getenv(childEnv), " ")
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	var node *cluster.Node
	store, err := postgres.Open(ctx, pgtest.URL(), postgres.WithSchema(schema), postgres.WithLogger(testkit.QuietLogger()),
		postgres.WithFence(func() (string, int64, bool) {
			if node == nil {
				return "", 0, false
			}
			return node.Token()
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer store.Close()
	sys := actor.NewSystem(actor.WithLogger(testkit.QuietLogger()))
	defer sys.Close()
	node, err = cluster.Start(ctx, sys, cluster.Config{Name: name, Kinds: []string{"account"}, Members: store, TTL: childTTL, Logger: testkit.QuietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer node.Close()
	rt := aggregate.NewRuntime(sys, store, aggregate.WithLogger(testkit.QuietLogger()), node.RuntimeOption())
	defer rt.Close()
	if _, err := aggregate.Register(rt, accountDefinition(), aggregate.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	node.Serve(rt)
	self, _ := node.Self()
	fmt.Println("READY", self.Address)
	go func() { // the parent closing stdin is a graceful stop
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	<-ctx.Done()
	return 0
}

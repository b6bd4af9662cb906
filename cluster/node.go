package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster/membership"
)

// Config configures a node ([Start]).
type Config struct {
	// Name names the node; it is what aggregates are placed by, so a
	// node that restarts under its name owns the same ones. Required.
	Name string
	// Host and Port are where the node listens for other nodes (port 0
	// picks a free one). Default host 127.0.0.1.
	Host string
	Port int
	// Kinds are the aggregate types (and "saga-" + saga types) this node
	// hosts. A node hosting none only sends.
	Kinds []string
	// Members keeps the member records: the PostgreSQL event store in
	// production (its members table), a memory store in tests. Required.
	Members membership.Store
	// TTL is the membership's time to live (default 6 s).
	TTL time.Duration
	// Clock and Logger; defaults the system clock and slog.Default().
	Clock  composable.Clock
	Logger *slog.Logger
}

// Node is one process of a cluster: its membership, its router and its
// transport. Give the aggregate runtime node.RuntimeOption(), then
// node.Serve(runtime); give a PostgreSQL event store
// postgres.WithFence(node.Token).
type Node struct {
	membership *membership.Membership
	router     *Router
	transport  *RemoteTransport
}

// Start starts a node on sys: the transport, then the membership — the
// node joins once others can reach it — then the endpoint. ctx bounds the
// start.
func Start(ctx context.Context, sys *actor.System, cfg Config) (*Node, error) {
	if cfg.Name == "" || cfg.Members == nil || sys == nil {
		return nil, fmt.Errorf("%w: cluster.Config needs a Name and Members, and Start an actor system", membership.ErrInvalid)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	transport, err := StartRemoteTransport(ctx, sys.ActorSystem(), cfg.Host, cfg.Port)
	if err != nil {
		return nil, err
	}
	n := &Node{transport: transport}
	n.membership, err = membership.Start(ctx, membership.Config{
		Store: cfg.Members, Name: cfg.Name, Address: transport.Address(), Kinds: cfg.Kinds, TTL: cfg.TTL,
		Clock: cfg.Clock, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, errors.Join(err, transport.Close())
	}
	n.router, err = NewRouter(RouterConfig{
		Self: n.membership.Self, View: n.membership.View, Changed: n.membership.Changed, Epoch: n.membership.Epoch,
		Transport: transport, Clock: cfg.Clock, Logger: cfg.Logger,
	})
	if err == nil {
		err = transport.Serve(n.router)
	}
	if err != nil {
		return nil, errors.Join(err, n.membership.Close(), transport.Close())
	}
	return n, nil
}

// RuntimeOption makes an aggregate runtime part of the cluster.
func (n *Node) RuntimeOption() aggregate.RuntimeOption {
	return aggregate.WithRemote(n.router.Remote())
}

// Serve runs the commands this node owns on rt.
func (n *Node) Serve(rt *aggregate.Runtime) { n.router.Serve(rt) }

// Token is the node's fence token (postgres.WithFence).
func (n *Node) Token() (id string, generation int64, ok bool) { return n.membership.Token() }

// Self returns the node's member record, and false while it is out.
func (n *Node) Self() (membership.Member, bool) { return n.membership.Self() }

// Members returns the members as the node last read them.
func (n *Node) Members() []membership.Member { return n.membership.View() }

// Router returns the node's router.
func (n *Node) Router() *Router { return n.router }

// Close leaves the cluster — the others route around this node at once —
// and stops the transport. Close the runtime first: commands still
// arriving are answered as from a node shutting down.
func (n *Node) Close() error {
	return errors.Join(n.membership.Close(), n.transport.Close())
}

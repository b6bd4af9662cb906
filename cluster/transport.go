package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	paremote "github.com/asynkron/protoactor-go/remote"

	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/cluster/wire"
)

// endpointName is the name of each node's endpoint actor.
const endpointName = "composable-cluster"

// RemoteTransport carries commands between nodes over protoactor remote:
// each node's endpoint actor receives wire.Command messages and answers
// with wire.Reply, one protobuf request per command. It is safe for
// concurrent use; Close it when done.
//
// protoactor's remote package has data races of its own that the race
// detector reports (notes/cluster.md), so the tests that start it run
// without -race, in their own CI step.
type RemoteTransport struct {
	sys    *protoactor.ActorSystem
	remote *paremote.Remote
	addr   string

	mu       sync.Mutex
	endpoint *protoactor.PID
	closed   bool
	wg       sync.WaitGroup // requests being answered
}

// DefaultCallTimeout bounds a call whose ctx has no deadline.
const DefaultCallTimeout = 30 * time.Second

// StartRemoteTransport starts protoactor remote on sys, listening on
// host:port (port 0 picks a free one), and returns the transport. Address
// says where others reach it. ctx bounds finding the port.
func StartRemoteTransport(ctx context.Context, sys *protoactor.ActorSystem, host string, port int) (*RemoteTransport, error) {
	// protoactor's Start panics when it cannot listen: find out first (a
	// port picked here could be taken before protoactor listens on it;
	// Start then fails with an error).
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %s:%d: %w", host, port, err)
	}
	addr := lis.Addr().(*net.TCPAddr)
	if err := lis.Close(); err != nil {
		return nil, err
	}
	r := paremote.NewRemote(sys, paremote.Configure(host, addr.Port))
	if err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("cluster: start remote on %s: %v", addr, v)
			}
		}()
		r.Start()
		return nil
	}(); err != nil {
		return nil, err
	}
	return &RemoteTransport{sys: sys, remote: r, addr: sys.ProcessRegistry.Address}, nil
}

// Address is where other nodes reach this one (host:port): give it to the
// membership (membership.Config.Address).
func (t *RemoteTransport) Address() string { return t.addr }

// Serve answers the commands other nodes send with r.Receive. Each is
// answered on a goroutine of its own, so that a slow command never holds
// up the others.
func (t *RemoteTransport) Serve(r *Router) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("cluster: transport closed")
	}
	if t.endpoint != nil {
		return errors.New("cluster: the transport serves a router already")
	}
	props := protoactor.PropsFromFunc(func(c protoactor.Context) {
		cmd, ok := c.Message().(*wire.Command)
		if !ok {
			return // system messages, and anything else
		}
		sender := c.Sender()
		if sender == nil {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), DefaultCallTimeout)
			if d := cmd.GetDeadlineUnixNano(); d > 0 {
				cancel()
				ctx, cancel = context.WithDeadline(context.Background(), time.Unix(0, d))
			}
			defer cancel()
			t.sys.Root.Send(sender, r.Receive(ctx, cmd))
		}()
	})
	pid, err := t.sys.Root.SpawnNamed(props, endpointName)
	if err != nil {
		return fmt.Errorf("cluster: spawn the endpoint: %w", err)
	}
	t.endpoint = pid
	return nil
}

// Call implements [Transport]: one request to the member's endpoint, the
// reply collected by an actor of its own that ends with the call —
// answered, or its ctx ended (DefaultCallTimeout without a deadline).
func (t *RemoteTransport) Call(ctx context.Context, to membership.Member, cmd *wire.Command) (*wire.Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	replies := make(chan any, 1)
	inbox := t.sys.Root.Spawn(protoactor.PropsFromFunc(func(c protoactor.Context) {
		switch m := c.Message().(type) {
		case *wire.Reply, *protoactor.DeadLetterResponse:
			select {
			case replies <- m:
			default:
			}
			c.Stop(c.Self())
		}
	}))
	defer t.sys.Root.Stop(inbox)
	t.sys.Root.RequestWithCustomSender(protoactor.NewPID(to.Address, endpointName), cmd, inbox)
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: call %s at %s: %w", to.ID, to.Address, ctx.Err())
	case m := <-replies:
		reply, ok := m.(*wire.Reply)
		if !ok {
			return nil, fmt.Errorf("cluster: call %s at %s: no endpoint there", to.ID, to.Address)
		}
		return reply, nil
	}
}

// Close stops the endpoint, waits for the answers under way and stops
// the remote server.
func (t *RemoteTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	endpoint := t.endpoint
	t.mu.Unlock()
	if endpoint != nil {
		if err := t.sys.Root.StopFuture(endpoint).Wait(); err != nil {
			return fmt.Errorf("cluster: stop the endpoint: %w", err)
		}
	}
	t.wg.Wait()
	t.remote.Shutdown(false) // graceful waits up to 10 s for gRPC streams that never end
	return nil
}

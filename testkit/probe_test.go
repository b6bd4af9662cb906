package testkit_test

import (
	"strings"
	"testing"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/testkit"
)

type ping struct{ N int }
type pong struct{ N int }

func newSystem(t *testing.T) *protoactor.ActorSystem {
	sys := actor.NewSystem()
	t.Cleanup(func() { _ = sys.Close() })
	return sys.ActorSystem()
}

func TestProbeExpectsRepliesAndSends(t *testing.T) {
	sys := newSystem(t)
	// An actor under test: answers ping with pong.
	ponger := sys.Root.Spawn(protoactor.PropsFromFunc(func(c protoactor.Context) {
		if p, ok := c.Message().(ping); ok {
			c.Respond(pong(p))
		}
	}))
	probe := testkit.NewProbe(t, sys)
	probe.Send(ponger, ping{N: 7})
	got, ok := testkit.ExpectMsg[pong](probe, time.Second)
	if !ok || got.N != 7 {
		t.Fatalf("got %+v, %v", got, ok)
	}
	probe.ExpectNoMsg(10 * time.Millisecond)

	// The probe plays the peer: a request to it can be answered.
	fut := sys.Root.RequestFuture(probe.PID(), ping{N: 1}, time.Second)
	if _, ok := testkit.ExpectMsg[ping](probe, time.Second); !ok {
		t.Fatal("no ping")
	}
	probe.Reply(pong{N: 2})
	res, err := fut.Result()
	if err != nil || res.(pong).N != 2 {
		t.Fatalf("reply: %v, %v", res, err)
	}
}

func TestProbeReportsFailures(t *testing.T) {
	sys := newSystem(t)
	tests := []struct {
		name string
		run  func(p *testkit.Probe)
		want string
	}{
		{"nothing arrives", func(p *testkit.Probe) { testkit.ExpectMsg[ping](p, 10*time.Millisecond) }, "expected testkit_test.ping within"},
		{"wrong type", func(p *testkit.Probe) {
			sys.Root.Send(p.PID(), pong{})
			testkit.ExpectMsg[ping](p, time.Second)
		}, "expected testkit_test.ping, got testkit_test.pong"},
		{"unexpected message", func(p *testkit.Probe) {
			sys.Root.Send(p.PID(), pong{})
			p.ExpectNoMsg(time.Second)
		}, "expected no message, got testkit_test.pong"},
		{"overflow", func(p *testkit.Probe) {
			for i := range 1100 {
				sys.Root.Send(p.PID(), ping{N: i})
			}
		}, "dropped 76 message(s)"},
		{"reply without sender", func(p *testkit.Probe) {
			sys.Root.Send(p.PID(), ping{})
			testkit.ExpectMsg[ping](p, time.Second)
			p.Reply(pong{})
		}, "had no sender"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			probe := testkit.NewProbe(rec, sys)
			tt.run(probe)
			errs := rec.finish()
			if len(errs) != 1 || !strings.Contains(errs[0], tt.want) {
				t.Fatalf("failures %q, want one containing %q", errs, tt.want)
			}
		})
	}
}

package saga_test

import (
	"context"
	"fmt"
	"time"

	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/saga"
)

// A transfer whose debit fails under the Park policy: the instance parks
// with the reason and is listed; once the wallet is reopened, Resume
// dispatches the debit again and the transfer goes on.
func ExampleSaga_Resume() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	defer sys.Close()
	rt := aggregate.NewRuntime(sys, memory.New(), aggregate.WithLogger(quiet()))
	defer rt.Close()
	wallets, err := aggregate.Register(rt, walletDefinition(), aggregate.Options{})
	if err != nil {
		panic(err)
	}
	transfers, err := saga.Register(rt, transferDefinition(), nil, saga.Options{})
	if err != nil {
		panic(err)
	}
	deliver := func(id string, e any) {
		data, err := transferDefinition().Events.Marshal(e)
		if err != nil {
			panic(err)
		}
		data.ID = id
		if err := transfers.Deliver(ctx, persistence.RecordedEvent{EventData: data}); err != nil {
			panic(err)
		}
	}

	_, _ = wallets.Send(ctx, "alice", Close{})
	deliver("e1", TransferRequested{Transfer: "t1", From: "alice", To: "bob", Amount: 10, Policy: saga.Park})
	inst, _ := transfers.Wait(ctx, "t1") // returns when the instance ends or parks
	fmt.Printf("%s: %s\n", inst.Status, inst.Parked.Reason)
	parked, _ := transfers.Parked(ctx, "", 10)
	fmt.Println("parked instances:", parked)

	_, _ = wallets.Send(ctx, "alice", Reopen{})
	if err := transfers.Resume(ctx, "t1"); err != nil {
		panic(err)
	}
	for inst.Status == saga.Parked || len(inst.Pending) > 0 { // the debit, dispatched again
		time.Sleep(time.Millisecond)
		inst, _ = transfers.Instance(ctx, "t1")
	}
	deliver("e2", TransferApproved{Transfer: "t1"})
	inst, _ = transfers.Wait(ctx, "t1")
	fmt.Println(inst.Status)
	// Output:
	// parked: step debit failed: account closed
	// parked instances: [t1]
	// completed
}

// ExampleSaga_Upgrade gives the instances a version without timer rows
// left behind their rows, once, after upgrading. On a store that version
// never wrote to there is nothing to do.
func ExampleSaga_Upgrade() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.WithLogger(quiet()))
	defer sys.Close()
	rt := aggregate.NewRuntime(sys, memory.New(), aggregate.WithLogger(quiet()))
	defer rt.Close()
	if _, err := aggregate.Register(rt, walletDefinition(), aggregate.Options{}); err != nil {
		panic(err)
	}
	transfers, err := saga.Register(rt, transferDefinition(), nil, saga.Options{})
	if err != nil {
		panic(err)
	}
	n, err := transfers.Upgrade(ctx)
	fmt.Println("instances upgraded:", n, err)
	// Output: instances upgraded: 0 <nil>
}

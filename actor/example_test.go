package actor_test

import (
	"context"
	"fmt"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
)

func ExampleSpawn() {
	sys := actor.NewSystem()
	defer sys.Close()

	type Tally struct{ Votes map[string]int }
	store, err := actor.Spawn(sys, actor.Config[Tally, string, struct{}]{
		Name:    "tally",
		Initial: Tally{Votes: map[string]int{}},
		Reducer: composable.ReducerFunc[Tally, string, struct{}](func(s *Tally, vote string, _ struct{}) composable.Effect[string] {
			s.Votes[vote]++
			return composable.None[string]()
		}),
		// The state holds a map: copy it, so a panic cannot leave it half
		// changed and callers never share it with the actor.
		Clone: func(t Tally) Tally {
			votes := make(map[string]int, len(t.Votes))
			for k, v := range t.Votes {
				votes[k] = v
			}
			return Tally{Votes: votes}
		},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = store.Send(ctx, "yes") // fire and forget
	_ = store.Send(ctx, "no")
	tally, err := store.Ask(ctx, "yes") // reduced after the two sends
	fmt.Println(tally.Votes, err)
	// Output: map[no:1 yes:2] <nil>
}

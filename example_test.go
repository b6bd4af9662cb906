package composable_test

import (
	"context"
	"fmt"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/testkit"
)

// Cart is a small feature: items and a total, with a "checkout" action that
// asks for a receipt through an effect.
type Cart struct {
	Items []string
	Done  bool
}

type CartAction interface{ cartAction() }

type (
	AddItem  struct{ Name string }
	Checkout struct{}
	Receipt  struct{ Count int }
)

func (AddItem) cartAction()  {}
func (Checkout) cartAction() {}
func (Receipt) cartAction()  {}

func ExampleReducerFunc() {
	cart := composable.ReducerFunc[Cart, CartAction, struct{}](func(s *Cart, a CartAction, _ struct{}) composable.Effect[CartAction] {
		switch a := a.(type) {
		case AddItem:
			s.Items = append(s.Items, a.Name)
		case Checkout:
			// Describe the follow-up; the runtime feeds it back.
			return composable.Send[CartAction](Receipt{Count: len(s.Items)})
		case Receipt:
			s.Done = true
		}
		return composable.None[CartAction]()
	})

	var s Cart
	_ = cart.Reduce(&s, AddItem{"tea"}, struct{}{})
	effect := cart.Reduce(&s, Checkout{}, struct{}{})

	// A runtime runs the effect; here a bare runner collects its actions.
	runner := composable.NewEffectRunner(nil, func(_ context.Context, a CartAction) {
		fmt.Printf("effect sent %#v\n", a)
		_ = cart.Reduce(&s, a, struct{}{})
	})
	defer runner.Close()
	runner.Start(context.Background(), effect, nil)
	fmt.Println("items:", s.Items, "done:", s.Done)
	// Output:
	// effect sent composable_test.Receipt{Count:1}
	// items: [tea] done: true
}

func ExampleDelay() {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	got := make(chan string, 1)
	runner := composable.NewEffectRunner(clock, func(_ context.Context, a string) { got <- a })
	defer runner.Close()

	runner.Start(context.Background(), composable.Delay(time.Minute, composable.Send("reminder")), nil)
	fmt.Println("armed timers:", clock.Pending())
	clock.Advance(time.Minute)
	fmt.Println("received:", <-got)
	// Output:
	// armed timers: 1
	// received: reminder
}

func ExampleCancelInFlight() {
	// Debounce: each keystroke restarts the wait, only the last search runs.
	type searchID struct{}
	search := func(q string) composable.Effect[string] {
		return composable.CancelInFlight(searchID{}, composable.Delay(300*time.Millisecond, composable.Send("search "+q)))
	}
	clock := testkit.NewManualClock(time.Unix(0, 0))
	got := make(chan string, 3)
	runner := composable.NewEffectRunner(clock, func(_ context.Context, a string) { got <- a })
	defer runner.Close()
	for _, q := range []string{"c", "co", "com"} {
		runner.Start(context.Background(), search(q), nil)
		clock.Advance(100 * time.Millisecond)
	}
	clock.Advance(time.Second)
	fmt.Println(<-got)
	// Output: search com
}

func ExampleScope() {
	type Counter struct{ N int }
	type App struct {
		Left, Right Counter
	}
	type LeftAction struct{ Delta int }
	counter := composable.ReducerFunc[Counter, int, struct{}](func(s *Counter, delta int, _ struct{}) composable.Effect[int] {
		s.N += delta
		return composable.None[int]()
	})
	app := composable.Scope(
		func(s *App) *Counter { return &s.Left },
		composable.Case[any, int]{
			Extract: func(a any) (int, bool) { l, ok := a.(LeftAction); return l.Delta, ok },
			Embed:   func(d int) any { return LeftAction{d} },
		},
		func(struct{}) struct{} { return struct{}{} },
		counter,
	)
	var s App
	app.Reduce(&s, LeftAction{Delta: 2}, struct{}{})
	app.Reduce(&s, "unrelated", struct{}{})
	fmt.Printf("%+v\n", s)
	// Output: {Left:{N:2} Right:{N:0}}
}

func ExampleForEach() {
	type Todo struct {
		ID   int
		Done bool
	}
	type Todos struct{ List []Todo }
	type Toggle struct{ ID int }
	type Remove struct{ ID int }

	todo := composable.ReducerFunc[Todo, struct{}, struct{}](func(t *Todo, _ struct{}, _ struct{}) composable.Effect[struct{}] {
		t.Done = !t.Done
		return composable.None[struct{}]()
	})
	list := composable.ReducerFunc[Todos, any, struct{}](func(s *Todos, a any, _ struct{}) composable.Effect[any] {
		if r, ok := a.(Remove); ok {
			for i, t := range s.List {
				if t.ID == r.ID {
					s.List = append(s.List[:i], s.List[i+1:]...)
					break
				}
			}
		}
		return composable.None[any]()
	})
	app := composable.ForEach(list,
		func(s *Todos) *[]Todo { return &s.List },
		func(t *Todo) int { return t.ID },
		composable.ElementCase[any, int, struct{}]{
			Extract: func(a any) (int, struct{}, bool) { t, ok := a.(Toggle); return t.ID, struct{}{}, ok },
			Embed:   func(id int, _ struct{}) any { return Toggle{id} },
		},
		func(struct{}) struct{} { return struct{}{} },
		todo,
	)
	s := Todos{List: []Todo{{ID: 1}, {ID: 2}}}
	app.Reduce(&s, Toggle{ID: 2}, struct{}{})
	app.Reduce(&s, Remove{ID: 1}, struct{}{})
	fmt.Printf("%+v\n", s)
	// Output: {List:[{ID:2 Done:true}]}
}

package testkit_test

import (
	"fmt"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/testkit"
)

// printTB prints failures; a real test passes its *testing.T.
type printTB struct{ cleanups []func() }

func (*printTB) Helper()                        {}
func (*printTB) Errorf(format string, a ...any) { fmt.Printf("FAIL: "+format+"\n", a...) }
func (p *printTB) Cleanup(f func())             { p.cleanups = append(p.cleanups, f) }

func ExampleTestStore() {
	type Timer struct{ Ticks int }
	reducer := composable.ReducerFunc[Timer, string, struct{}](func(s *Timer, a string, _ struct{}) composable.Effect[string] {
		switch a {
		case "start":
			return composable.Delay(time.Second, composable.Send("tick"))
		case "tick":
			s.Ticks++
		}
		return composable.None[string]()
	})

	t := &printTB{}
	ts := testkit.NewTestStore(t, reducer, Timer{}, struct{}{})
	ts.Send("start", nil) // no state change
	ts.Advance(time.Second)
	ts.Receive("tick", func(s *Timer) { s.Ticks = 1 })

	ts.Send("start", nil)
	ts.Advance(time.Second)
	// The test forgets to receive the second tick: Finish reports it.
	ts.Finish()
	// Output:
	// FAIL: testkit: 1 received action(s) were not asserted: "tick"
}

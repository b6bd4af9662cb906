package persistence_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// apply applies changes one by one to a table of timers by name, as the
// contract states them.
func apply(table map[string]persistence.Timer, changes []persistence.TimerChange) {
	for _, c := range changes {
		cur, ok := table[c.Timer.Name]
		switch {
		case !c.Cancel:
			table[c.Timer.Name] = c.Timer
		case ok && c.Applies(cur):
			delete(table, c.Timer.Name)
		}
	}
}

// TestCollapseTimersKeepsTheNetEffect: for random tables and sequences of
// arms, cancels and conditional cancels, the collapsed changes — applied
// in any order — leave the table as the sequence does, and never arm and
// cancel one timer together.
func TestCollapseTimersKeepsTheNetEffect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c"}
	fire := func() string { return fmt.Sprint("f", rng.IntN(3)) }
	for round := range 20000 {
		table := map[string]persistence.Timer{}
		for _, n := range names {
			if rng.IntN(2) == 0 {
				table[n] = persistence.Timer{Owner: "o", ID: "1", Name: n, Due: time.Unix(1, 0), FireID: fire()}
			}
		}
		var changes []persistence.TimerChange
		for range rng.IntN(6) {
			tm := persistence.Timer{Owner: "o", ID: "1", Name: names[rng.IntN(len(names))]}
			switch rng.IntN(3) {
			case 0:
				tm.Due, tm.FireID = time.Unix(int64(rng.IntN(9)), 0), fire()
				changes = append(changes, persistence.TimerChange{Timer: tm})
			case 1:
				changes = append(changes, persistence.TimerChange{Timer: tm, Cancel: true})
			case 2:
				tm.FireID = fire()
				changes = append(changes, persistence.TimerChange{Timer: tm, Cancel: true})
			}
		}
		want, got := maps.Clone(table), maps.Clone(table)
		apply(want, changes)
		collapsed := persistence.CollapseTimers(changes)
		rng.Shuffle(len(collapsed), func(i, j int) { collapsed[i], collapsed[j] = collapsed[j], collapsed[i] })
		apply(got, collapsed)
		if !maps.Equal(want, got) {
			t.Fatalf("round %d: table %v, changes %+v\ncollapsed %+v\nsequential %v, collapsed %v", round, table, changes, collapsed, want, got)
		}
		kinds := map[string]map[bool]bool{}
		for _, c := range collapsed {
			if kinds[c.Timer.Name] == nil {
				kinds[c.Timer.Name] = map[bool]bool{}
			}
			kinds[c.Timer.Name][c.Cancel] = true
		}
		for name, k := range kinds {
			if k[true] && k[false] {
				t.Fatalf("round %d: %s is both armed and cancelled in %+v", round, name, collapsed)
			}
		}
	}
}

func TestValidateTimers(t *testing.T) {
	due := time.Unix(100, 0)
	for name, c := range map[string]persistence.TimerChange{
		"no owner":        {Timer: persistence.Timer{ID: "1", Name: "t", Due: due, FireID: "f"}},
		"no id":           {Timer: persistence.Timer{Owner: "o", Name: "t", Due: due, FireID: "f"}},
		"no name":         {Timer: persistence.Timer{Owner: "o", ID: "1", Due: due, FireID: "f"}, Cancel: true},
		"arm without id":  {Timer: persistence.Timer{Owner: "o", ID: "1", Name: "t", Due: due}},
		"arm without due": {Timer: persistence.Timer{Owner: "o", ID: "1", Name: "t", FireID: "f"}},
		"invalid utf-8":   {Timer: persistence.Timer{Owner: "o", ID: "\xff", Name: "t", Due: due, FireID: "f"}},
	} {
		if err := persistence.ValidateTimers([]persistence.TimerChange{c}); !errors.Is(err, persistence.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
	ok := []persistence.TimerChange{
		{Timer: persistence.Timer{Owner: "o", ID: "1", Name: "t", Due: due, FireID: "f"}},
		{Timer: persistence.Timer{Owner: "o", ID: "1", Name: "t"}, Cancel: true},
	}
	if err := persistence.ValidateTimers(ok); err != nil {
		t.Fatal(err)
	}
}

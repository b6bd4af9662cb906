package testkit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit"
)

// A tally: the smallest aggregate, for the scenario kit's own tests.
type tally struct{ N int }
type tallyCmd struct {
	Add   int
	Later bool
}
type added struct{ N int }

var errNegative = errors.New("negative")

func tallyDef() aggregate.Definition[tally, tallyCmd, added, struct{}] {
	reg := persistence.NewRegistry()
	if err := persistence.Register[added](reg, "tally.added"); err != nil {
		panic(err)
	}
	return aggregate.Definition[tally, tallyCmd, added, struct{}]{
		Type: "tally",
		Handle: func(_ tally, c tallyCmd, _ struct{}) (aggregate.Decision[tallyCmd, added], error) {
			if c.Add < 0 {
				return aggregate.Decision[tallyCmd, added]{}, errNegative
			}
			d := aggregate.Emit[tallyCmd](added{N: c.Add})
			if c.Later {
				d = d.Then(composable.Delay(time.Second, composable.Send(tallyCmd{Add: 1})))
			}
			return d, nil
		},
		Apply:  func(s *tally, e added) { s.N += e.N },
		Events: reg,
	}
}

func TestScenarioPassesAndAgreesWithTheLiveActor(t *testing.T) {
	testkit.Both(t, tallyDef(), []added{{N: 2}}, func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
		sc.When(tallyCmd{Add: 3}).Then(added{N: 3}).ThenState(func(s *tally) { s.N = 5 })
		sc.When(tallyCmd{Add: -1}).ThenError(errNegative)
		sc.When(tallyCmd{Add: 0}).Then(added{N: 0})
	})
}

func TestScenarioReportsFailures(t *testing.T) {
	tests := []struct {
		name string
		run  func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}])
		want []string
	}{
		{"unasserted step", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1})
		}, []string{"was not asserted"}},
		{"wrong events", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1}).Then(added{N: 2})
		}, []string{"events differ"}},
		{"unexpected error", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: -1}).Then(added{N: -1})
		}, []string{"want events, got error"}},
		{"missing error", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1}).ThenError(errNegative)
		}, []string{"want error"}},
		{"wrong state", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1}).Then(added{N: 1}).ThenState(func(s *tally) { s.N = 7 })
		}, []string{"state differs"}},
		{"unasserted effect", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1, Later: true}).Then(added{N: 1})
		}, []string{"effect that was not asserted"}},
		{"wrong effect", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1, Later: true}).Then(added{N: 1}).ThenEffect(time.Second, tallyCmd{Add: 2})
		}, []string{"effect commands differ"}},
		{"effect still running", func(sc *testkit.Scenario[tally, tallyCmd, added, struct{}]) {
			sc.When(tallyCmd{Add: 1, Later: true}).Then(added{N: 1}).ThenEffect(time.Millisecond)
		}, []string{"effect still running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			tt.run(testkit.Given(rec, tallyDef()))
			errs := rec.finish()
			if len(errs) != len(tt.want) {
				t.Fatalf("failures %q, want %d matching %q", errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i], w) {
					t.Errorf("failure %q does not contain %q", errs[i], w)
				}
			}
		})
	}
}

func TestGoldenReplayDetectsBreaks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tally.json")
	events := []persistence.RecordedEvent{
		{EventData: persistence.EventData{Type: "tally.added", SchemaVersion: 1, Data: []byte(`{"N":2}`)}},
		{EventData: persistence.EventData{Type: "tally.added", SchemaVersion: 1, Data: []byte(`{"N":3}`)}},
	}
	testkit.RecordGolden(t, path, "tally/t1", events)

	rec := &recorder{}
	testkit.GoldenReplay(rec, tallyDef(), path)
	if errs := rec.finish(); len(errs) != 1 || !strings.Contains(errs[0], "has no state") {
		t.Fatalf("golden without state: %q", errs)
	}
	t.Setenv(testkit.UpdateGoldenEnv, "1")
	testkit.GoldenReplay(t, tallyDef(), path)
	t.Setenv(testkit.UpdateGoldenEnv, "")
	testkit.GoldenReplay(t, tallyDef(), path) // matches now

	// A changed Apply (a "schema break") no longer reproduces the state.
	broken := tallyDef()
	broken.Apply = func(s *tally, e added) { s.N += 2 * e.N }
	rec = &recorder{}
	testkit.GoldenReplay(rec, broken, path)
	if errs := rec.finish(); len(errs) != 1 || !strings.Contains(errs[0], "replayed state differs") {
		t.Fatalf("broken replay: %q", errs)
	}
	// An event type the registry no longer knows fails too.
	raw, _ := os.ReadFile(path)
	_ = os.WriteFile(path, []byte(strings.Replace(string(raw), "tally.added", "tally.gone", 1)), 0o644)
	rec = &recorder{}
	testkit.GoldenReplay(rec, tallyDef(), path)
	if errs := rec.finish(); len(errs) != 1 || !strings.Contains(errs[0], "unknown event type") {
		t.Fatalf("unknown type: %q", errs)
	}
}

func TestScenarioHelpers(t *testing.T) {
	sc := testkit.GivenLiveWith(t, tallyDef(), aggregate.Options{SnapshotEvery: 1})
	sc.When(tallyCmd{Add: -5}).ThenError(errNegative).ThenUnchanged()
	sc.When(tallyCmd{Add: 2}).Then(added{N: 2})
	rec := &recorder{}
	bad := testkit.Given(rec, tallyDef())
	bad.When(tallyCmd{Add: 1}).Then(added{N: 1}).ThenUnchanged()
	if errs := rec.finish(); len(errs) != 1 || !strings.Contains(errs[0], "state differs") {
		t.Fatalf("ThenUnchanged after a change: %q", errs)
	}
}

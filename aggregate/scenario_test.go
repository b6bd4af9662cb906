package aggregate_test

import (
	"testing"
	"time"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/testkit"
)

// The account's rules as given / when / then, run against the pure
// functions and against a live actor.
func TestAccountScenarios(t *testing.T) {
	testkit.Both(t, accountDefinition(), []event{Opened{Owner: "ada"}, Deposited{Amount: 10}}, func(sc *testkit.Scenario[account, command, event, env]) {
		sc.When(deposit{Amount: 5}).Then(Deposited{Amount: 5}).ThenState(func(s *account) { s.Balance = 15 })
		sc.When(withdraw{Amount: 100}).ThenError(errInsufficient).ThenState(func(*account) {})
		sc.When(withdraw{Amount: 15}).Then(Withdrawn{Amount: 15})
		sc.When(open{Owner: "bob"}).ThenError(aggregate.ErrRejected)
	})
}

func TestEffectsAreAssertedInScenarios(t *testing.T) {
	sc := testkit.Given(t, accountDefinition())
	sc.When(holdLater{After: time.Minute}).Then().ThenEffect(time.Minute, hold{})
	sc.When(hold{}).Then(Held{})
}

// TestGoldenReplay replays a recorded stream, with version-1 events that
// the upcaster must still read, on every run.
func TestGoldenReplay(t *testing.T) {
	testkit.GoldenReplay(t, accountDefinition(), "testdata/account.golden.json")
}

package placement_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/composable-go/composable/cluster/placement"
)

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d@127.0.0.1:%d", i, 9000+i)
	}
	return out
}

// TestOwnerIsDeterministicAndOrderFree: every node, whatever the order of
// its member list, computes the same owner.
func TestOwnerIsDeterministicAndOrderFree(t *testing.T) {
	ms := members(5)
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	for i := range 1000 {
		id := fmt.Sprint("order/", i)
		a, ok := placement.Owner(id, ms)
		b, _ := placement.Owner(id, rev)
		if !ok || a != b {
			t.Fatalf("%s: owner %q in one order, %q in another", id, a, b)
		}
		if r := placement.Ranked(id, rev); r[0] != a || len(r) != 5 {
			t.Fatalf("%s: ranked %v, owner %q", id, r, a)
		}
	}
	if _, ok := placement.Owner("order/1", nil); ok {
		t.Fatal("an owner among no members")
	}
}

// TestOwnersAreBalanced: over 30,000 identities and 3 members, each owns
// a third, within 3%.
func TestOwnersAreBalanced(t *testing.T) {
	ms := members(3)
	counts := map[string]int{}
	const n = 30000
	for i := range n {
		o, _ := placement.Owner(fmt.Sprint("order/", i), ms)
		counts[o]++
	}
	for m, c := range counts {
		if share := float64(c) / n; share < 1.0/3-0.03 || share > 1.0/3+0.03 {
			t.Fatalf("%s owns %.3f of the identities: %v", m, share, counts)
		}
	}
}

// TestJoinAndLeaveMoveOnlyTheirShare: when a fourth member joins, only the
// identities it now owns move, about a quarter; when a member leaves, only
// the identities it owned move, each to the member ranked next.
func TestJoinAndLeaveMoveOnlyTheirShare(t *testing.T) {
	three, four := members(3), members(4)
	const n = 20000
	moved := 0
	for i := range n {
		id := fmt.Sprint("order/", i)
		before, _ := placement.Owner(id, three)
		after, _ := placement.Owner(id, four)
		if before != after {
			if after != four[3] {
				t.Fatalf("%s moved from %s to %s, not to the new member", id, before, after)
			}
			moved++
		}
		// Leaving: the owner's identities go to the next ranked member;
		// nothing else moves.
		gone := placement.Ranked(id, four)
		left := slices.DeleteFunc(slices.Clone(four), func(m string) bool { return m == gone[0] })
		if o, _ := placement.Owner(id, left); o != gone[1] {
			t.Fatalf("%s: after %s left, owner %s, want the next ranked %s", id, gone[0], o, gone[1])
		}
		other := slices.DeleteFunc(slices.Clone(four), func(m string) bool { return m == gone[3] })
		if o, _ := placement.Owner(id, other); o != gone[0] {
			t.Fatalf("%s moved when a member that did not own it left", id)
		}
	}
	if share := float64(moved) / n; share < 0.22 || share > 0.28 {
		t.Fatalf("a join moved %.3f of the identities, want about 1/4", share)
	}
}

func BenchmarkOwner(b *testing.B) {
	ms := members(5)
	for i := 0; b.Loop(); i++ {
		placement.Owner("order/42", ms)
	}
}

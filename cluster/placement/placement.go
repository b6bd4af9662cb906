// Package placement decides which member of a cluster owns an identity:
// rendezvous (highest random weight) hashing over the current members.
// Every node computes the same owner from the same member list, without
// talking to the others, and when a member joins or leaves only the
// identities it wins or owned move — about 1/N of them.
//
// Placement decides where an activation should live, not whether it may
// write: two nodes with different views of the members may both believe
// they own an identity for a moment. The event store's expected-version
// check, command ids and the member-generation fence keep that correct.
package placement

import (
	"hash/fnv"
	"slices"
)

// Owner returns the member of members that owns identity, and false when
// members is empty. Members are named by their ids, which must be unique;
// their order does not matter.
func Owner(identity string, members []string) (string, bool) {
	var best string
	var bestWeight uint64
	found := false
	for _, m := range members {
		w := weight(m, identity)
		if !found || w > bestWeight || (w == bestWeight && m < best) {
			best, bestWeight, found = m, w, true
		}
	}
	return best, found
}

// Ranked returns members ordered from the owner of identity down: the
// owner first, then the member that would own it were the owner gone, and
// so on.
func Ranked(identity string, members []string) []string {
	out := slices.Clone(members)
	weights := make(map[string]uint64, len(out))
	for _, m := range out {
		weights[m] = weight(m, identity)
	}
	slices.SortFunc(out, func(a, b string) int {
		switch wa, wb := weights[a], weights[b]; {
		case wa > wb:
			return -1
		case wa < wb:
			return 1
		}
		return cmpString(a, b)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// weight is the rendezvous weight of member for identity: FNV-1a over
// both, separated so that ("ab", "c") and ("a", "bc") differ, finished
// with a 64-bit mixer so that weights of similar strings are independent.
func weight(member, identity string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(identity))
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Package membership keeps the members of a cluster: who is alive, at
// which address, hosting which kinds — in a store every node can reach
// (PostgreSQL by default; memory for tests) rather than by gossip, so that
// every node reads the same list and a node that cannot reach the store
// knows it is out.
//
// A member joins for a time to live and renews before it runs out. Each
// join gets a generation, higher than every generation before it in that
// store: a member's id and generation are its fence token. A member whose
// record expired — frozen, cut off, too slow to renew — is out for good
// under that generation: it must stop hosting at once and join again,
// under a new id and generation. The event store checks the token in
// every group-commit transaction (see persistence/postgres WithFence), so
// that an expired member's late writes fail.
//
// The protocol, stated once:
//
//   - Join records the member alive until now + TTL (the store's clock)
//     and returns its generation.
//   - Renew extends that to now + TTL if the record is still alive;
//     otherwise it fails with ErrExpired, and the record never comes back.
//   - Members lists the records alive now, by generation.
//   - Leave removes the record: the others see the member gone at once.
//
// [Start] drives this for one node: it joins, renews every TTL/3, and on
// ErrExpired — or when no renewal landed for TTL less a tenth, before the
// store can expire the record — reports the loss and joins again; it
// reads the member list every poll interval, and when the store hints at
// a change, and reports each new view.
package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Member is a node of the cluster as the membership store records it.
type Member struct {
	// Name names the node; the same across its joins.
	Name string
	// ID names the member: Name-Generation, unique per join — a node
	// that joins again does so under a new id. Set by the store.
	ID string
	// Address is where other nodes reach it (host:port).
	Address string
	// Kinds are the kinds of actors (aggregate and saga types) it hosts.
	Kinds []string
	// Generation orders joins: each join gets one higher than every join
	// before it in the store. Set by the store.
	Generation int64
}

// Store keeps the member records. Implementations are safe for concurrent
// use and pass the suite in package membershiptest; expiry is decided by
// the store's clock, the same for every node.
type Store interface {
	// Join records m alive for ttl and returns it with its generation
	// and id (see Member).
	Join(ctx context.Context, m Member, ttl time.Duration) (Member, error)
	// Renew records the member alive for ttl from now if its record is
	// alive; otherwise it returns ErrExpired, for good.
	Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error
	// Leave removes the member's record; leaving twice is not an error.
	Leave(ctx context.Context, id string, generation int64) error
	// Members returns the members alive now, by generation.
	Members(ctx context.Context) ([]Member, error)
}

// Changes is implemented by stores that hint when the member list may
// have changed (PostgreSQL: LISTEN/NOTIFY). The hint is not the change:
// readers read the list again.
type Changes interface {
	// MembersChanged returns a channel that is closed, or receives, after
	// the next change. Readers ask for it again after each.
	MembersChanged() <-chan struct{}
}

var (
	// ErrExpired is returned by Renew for a member whose record expired
	// or is gone: it must stop hosting and join again.
	ErrExpired = errors.New("membership: membership expired")
	// ErrInvalid is matched by errors about a bad member or TTL.
	ErrInvalid = errors.New("membership: invalid")
)

// MaxNameLength bounds node names, addresses and kind names, in bytes.
const MaxNameLength = 200

// Validate checks a member as it asks to join, and the TTL.
func Validate(m Member, ttl time.Duration) error {
	switch {
	case m.Name == "" || len(m.Name) > MaxNameLength || !printable(m.Name):
		return fmt.Errorf("%w: node name %q: 1 to %d printable ASCII bytes", ErrInvalid, cut(m.Name), MaxNameLength)
	case len(m.Address) > MaxNameLength || !printable(m.Address):
		return fmt.Errorf("%w: address %q of node %s", ErrInvalid, cut(m.Address), m.Name)
	case len(m.Kinds) > 1024:
		return fmt.Errorf("%w: node %s hosts %d kinds, at most 1024", ErrInvalid, m.Name, len(m.Kinds))
	case ttl < time.Millisecond || ttl > time.Hour:
		return fmt.Errorf("%w: TTL %v, between 1ms and 1h", ErrInvalid, ttl)
	}
	for _, k := range m.Kinds {
		if k == "" || len(k) > MaxNameLength || !printable(k) {
			return fmt.Errorf("%w: kind %q of node %s", ErrInvalid, cut(k), m.Name)
		}
	}
	return nil
}

// MemberID is the id of the member named name joined at generation.
func MemberID(name string, generation int64) string { return fmt.Sprintf("%s-%d", name, generation) }

// printable reports whether s is ASCII without control characters: ids
// and addresses go into logs, SQL parameters and protoactor's member ids.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// SameView reports whether two member lists name the same members at the
// same generations.
func SameView(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.ID == y.ID && x.Generation == y.Generation && x.Address == y.Address && slices.Equal(x.Kinds, y.Kinds)
	})
}

// Hosting returns the ids of the members that host kind.
func Hosting(members []Member, kind string) []string {
	var out []string
	for _, m := range members {
		if slices.Contains(m.Kinds, kind) {
			out = append(out, m.ID)
		}
	}
	return out
}

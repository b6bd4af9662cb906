package aggregate

import (
	"strconv"
	"testing"

	"github.com/google/uuid"
)

// TestCommandIDEventIDsAreStable: events of a command with an id keep the
// ids earlier releases derived (uuid.NewSHA1 over stream, command id and
// index), so a retry across an upgrade is still recognised as a duplicate.
func TestCommandIDEventIDsAreStable(t *testing.T) {
	in := instance{commandID: "cmd-7"}
	for i := range 3 {
		want := uuid.NewSHA1(eventNamespace, []byte("order/42\x00cmd-7\x00"+strconv.Itoa(i))).String()
		if got := in.eventID("order/42", i); got != want {
			t.Fatalf("event %d: id %s, want %s", i, got, want)
		}
	}
}

// TestInstanceIDsIncreaseAndStayApart: ids from one generator grow (the
// index takes them at its right edge), event ids of one instance differ,
// and two generators differ in their node bits.
func TestInstanceIDsIncreaseAndStayApart(t *testing.T) {
	g := newInstanceIDs()
	seen := map[string]bool{}
	prev := ""
	for range 10_000 { // more than 4,096 per millisecond: the sequence carries
		in := g.next()
		first := in.eventID("s", 0)
		if first <= prev {
			t.Fatalf("id %s does not follow %s", first, prev)
		}
		prev = first
		for _, i := range []int{0, 1, 0xffff, 0x10000, 0x10001} {
			id := in.eventID("s", i)
			if seen[id] {
				t.Fatalf("id %s handed out twice", id)
			}
			seen[id] = true
			u, err := uuid.Parse(id)
			if err != nil || u.Variant() != uuid.RFC4122 {
				t.Fatalf("id %s: %v, variant %v", id, err, u.Variant())
			}
			if want := uuid.Version(7); i <= 0xffff && u.Version() != want {
				t.Fatalf("id %s: version %d, want 7", id, u.Version())
			}
		}
	}
	other := newInstanceIDs()
	if a, b := g.next().seq, other.next().seq; [6]byte(a[8:14]) == [6]byte(b[8:14]) {
		t.Fatalf("two generators share node bits %x", a[8:14])
	}
}

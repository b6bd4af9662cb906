package aggregate

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // UUID version 5 is defined on SHA-1; it names, it does not protect
	"encoding/binary"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// eventNamespace is the UUID namespace of event ids derived from command
// ids.
var eventNamespace = uuid.MustParse("6f0d7a4e-2b4c-5b8e-9a51-3c1d2e7f4a90")

// instance identifies one run of a command; its events' ids derive from
// it, so retrying the same instance reuses them, and the store's duplicate
// check tells whether an attempt whose outcome was unknown landed.
type instance struct {
	// commandID, when the caller gave one: the ids are then a hash of the
	// stream, the command id and the event's index, the same in every
	// process and on every retry.
	commandID string
	// seq otherwise: a time-ordered UUID whose last two bytes are zero;
	// event i's id is seq with i in them.
	seq uuid.UUID
}

// eventID returns the id of the command's i-th event in stream. Ids of
// commands without a command id grow with time, so the store's unique
// index on event ids takes them at its right edge instead of at random
// pages: random UUIDs cost about an eighth of the append throughput on
// PostgreSQL.
func (in instance) eventID(stream string, i int) string {
	if in.commandID == "" && i <= 0xffff {
		id := in.seq
		binary.BigEndian.PutUint16(id[14:], uint16(i))
		return id.String()
	}
	name := in.commandID
	if name == "" { // more than 65,536 events in one command
		name = "seq:" + in.seq.String()
	}
	var buf [256]byte
	b := append(buf[:0], eventNamespace[:]...)
	b = append(b, stream...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(i), 10)
	// uuid.NewSHA1, without its allocations.
	sum := sha1.Sum(b) //nolint:gosec // see the import
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = (id[6] & 0x0f) | 0x50 // version 5
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id.String()
}

// instanceIDs hands out time-ordered instance ids: UUID version 7 with a
// 48-bit millisecond time, a 12-bit sequence that keeps ids from one
// generator strictly increasing (carrying into the time when more than
// 4,096 are taken in a millisecond), 46 random bits fixed per generator
// that keep generators apart, and 16 zero bits for the event index.
type instanceIDs struct {
	last atomic.Int64 // milliseconds<<12 | sequence of the last id
	node [6]byte      // random; the top two bits hold the variant
}

func newInstanceIDs() *instanceIDs {
	g := &instanceIDs{}
	_, _ = rand.Read(g.node[:]) // never fails (crypto/rand panics instead)
	g.node[0] = (g.node[0] & 0x3f) | 0x80
	return g
}

// next returns a fresh instance for a command without a command id.
func (g *instanceIDs) next() instance {
	now := time.Now().UnixMilli() << 12
	for {
		last := g.last.Load()
		t := max(now, last+1)
		if g.last.CompareAndSwap(last, t) {
			var id uuid.UUID
			binary.BigEndian.PutUint64(id[0:8], uint64(t>>12)<<16|0x7000|uint64(t&0xfff))
			copy(id[8:14], g.node[:])
			return instance{seq: id}
		}
	}
}

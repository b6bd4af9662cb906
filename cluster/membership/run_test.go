package membership_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/composable-go/composable/cluster/membership"
	"github.com/composable-go/composable/cluster/membership/memory"
	"github.com/composable-go/composable/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 3 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// node is a started membership with its callbacks recorded on channels.
type node struct {
	m      *membership.Membership
	views  chan []membership.Member
	joined chan membership.Member
	lost   chan error
	lostAt chan time.Time // the clock's reading when the loss was reported
}

func start(t *testing.T, store membership.Store, clock *testkit.ManualClock, name string) *node {
	t.Helper()
	n := &node{views: make(chan []membership.Member, 100), joined: make(chan membership.Member, 10), lost: make(chan error, 10), lostAt: make(chan time.Time, 10)}
	m, err := membership.Start(ctxFor(t), membership.Config{
		Store: store, Name: name, Address: "127.0.0.1:1", Kinds: []string{"order"}, TTL: ttl, Clock: clock,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnJoined: func(m membership.Member) { n.joined <- m },
		OnLost:   func(_ membership.Member, err error) { n.lostAt <- clock.Now(); n.lost <- err },
		OnView:   func(ms []membership.Member) { n.views <- ms },
	})
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	t.Cleanup(func() { _ = m.Close() })
	return n
}

// waitView waits for a view of n members.
func (nd *node) waitView(t *testing.T, n int) []membership.Member {
	t.Helper()
	for {
		select {
		case v := <-nd.views:
			if len(v) == n {
				return v
			}
		case <-ctxFor(t).Done():
			t.Fatalf("no view of %d members", n)
		}
	}
}

// tick advances the clock by ttl/3 once the nodes' goroutines all wait on
// it (two timers per node: the heartbeat and the poll).
func tick(t *testing.T, clock *testkit.ManualClock, nodes int) {
	t.Helper()
	if err := clock.BlockUntil(ctxFor(t), 2*nodes); err != nil {
		t.Fatal(err)
	}
	clock.Advance(ttl / 3)
}

// TestNodesSeeEachOtherAndStayAlive: two nodes see both; renewing every
// TTL/3 keeps them listed over many TTLs; one that leaves is seen gone at
// once.
func TestNodesSeeEachOtherAndStayAlive(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := &counted{Store: memory.New(clock), renewed: make(chan struct{}, 10)}
	a := start(t, store, clock, "a")
	b := start(t, store, clock, "b")
	a.waitView(t, 2)
	if v := b.waitView(t, 2); v[0].Name != "a" || v[1].Name != "b" {
		t.Fatalf("b's view %+v", v)
	}
	for range 12 { // four TTLs
		tick(t, clock, 2)
		for range 2 { // each node renewed before time moves on
			select {
			case <-store.renewed:
			case <-ctxFor(t).Done():
				t.Fatal("no renewal")
			}
		}
	}
	if ms, _ := store.Members(ctxFor(t)); len(ms) != 2 {
		t.Fatalf("members after four TTLs: %+v", ms)
	}
	if err := b.m.Close(); err != nil {
		t.Fatal(err)
	}
	if v := a.waitView(t, 1); v[0].Name != "a" {
		t.Fatalf("a's view after b left: %+v", v)
	}
	if _, _, ok := b.m.Token(); ok {
		t.Fatal("a node that left still has a token")
	}
}

// refusing is a store whose renewals fail while set: with ErrExpired, or
// with an outage.
type refusing struct {
	*memory.Store
	err atomic.Pointer[error]
}

func (s *refusing) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	if err := s.err.Load(); err != nil {
		return *err
	}
	return s.Store.Renew(ctx, id, generation, ttl)
}

// TestExpiredMembershipIsLostAndRejoined: a renewal refused as expired is
// a loss — reported, the token withdrawn — and the node joins again under
// a new id and a higher generation.
func TestExpiredMembershipIsLostAndRejoined(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := &refusing{Store: memory.New(clock)}
	n := start(t, store, clock, "a")
	first := <-n.joined
	expired := membership.ErrExpired
	store.err.Store(&expired)
	tick(t, clock, 1)
	select {
	case err := <-n.lost:
		if !errors.Is(err, membership.ErrExpired) {
			t.Fatalf("lost with %v", err)
		}
	case <-ctxFor(t).Done():
		t.Fatal("the loss was not reported")
	}
	if _, _, ok := n.m.Token(); ok {
		t.Fatal("a node that lost its membership still has a token")
	}
	store.err.Store(nil)
	tick(t, clock, 1)
	again := <-n.joined
	if again.ID == first.ID || again.Name != "a" || again.Generation <= first.Generation {
		t.Fatalf("joined again as %s@%d after %s@%d", again.ID, again.Generation, first.ID, first.Generation)
	}
	if id, gen, ok := n.m.Token(); !ok || id != again.ID || gen != again.Generation {
		t.Fatalf("token %s@%d (%v)", id, gen, ok)
	}
}

// TestOutageForAWholeTTLIsALoss: while the store cannot be reached, the
// node keeps its membership for less than a TTL since the last renewal
// that landed, then gives it up — before the store would expire it.
func TestOutageForAWholeTTLIsALoss(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := &refusing{Store: memory.New(clock)}
	n := start(t, store, clock, "a")
	<-n.joined
	down := errors.New("connection refused")
	store.err.Store(&down)
	for i := 1; i <= 3; i++ {
		tick(t, clock, 1)
		if i < 3 {
			if err := clock.BlockUntil(ctxFor(t), 2); err != nil { // the failed renewal is handled
				t.Fatal(err)
			}
			select {
			case err := <-n.lost:
				t.Fatalf("lost after %d/3 of the TTL: %v", i, err)
			default:
			}
		}
	}
	select {
	case err := <-n.lost:
		if !errors.Is(err, membership.ErrExpired) {
			t.Fatalf("lost with %v, want ErrExpired", err)
		}
	case <-ctxFor(t).Done():
		t.Fatal("no loss after a whole TTL without renewal")
	}
}

// TestStartRefusesBadConfig: no store, no name, or a name no member id
// can carry, and nothing is joined.
func TestStartRefusesBadConfig(t *testing.T) {
	store := memory.New(nil)
	for _, cfg := range []membership.Config{
		{Name: "a"},
		{Store: store},
		{Store: store, Name: "bad name"},
		{Store: store, Name: "a", TTL: -time.Second},
	} {
		if _, err := membership.Start(ctxFor(t), cfg); !errors.Is(err, membership.ErrInvalid) {
			t.Fatalf("Start(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
	if ms, _ := store.Members(ctxFor(t)); len(ms) != 0 {
		t.Fatalf("refused starts joined %+v", ms)
	}
}

// hanging is a store whose renewals hang until their ctx ends: a network
// that drops packets.
type hanging struct {
	*memory.Store
	hang atomic.Bool
}

func (s *hanging) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	if s.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.Renew(ctx, id, generation, ttl)
}

// TestHangingRenewalsAreALossBeforeTheStoreExpires: renewals that never
// answer do not hold the loss back: the node gives its membership up by
// the time the store expires its record, not a renewal period later, and
// removes the record when the store can be reached again.
func TestHangingRenewalsAreALossBeforeTheStoreExpires(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := &hanging{Store: memory.New(clock)}
	n := start(t, store, clock, "a")
	first := <-n.joined
	store.hang.Store(true)
	joinedAt := time.Unix(0, 0)
	var lostAt time.Time
	for lostAt.IsZero() {
		tick(t, clock, 1)
		if err := clock.BlockUntil(ctxFor(t), 2); err != nil { // the tick is handled
			t.Fatal(err)
		}
		select {
		case lostAt = <-n.lostAt:
		default:
			if clock.Now().Sub(joinedAt) > 2*ttl {
				t.Fatal("no loss two TTLs after the last renewal")
			}
		}
	}
	if late := lostAt.Sub(joinedAt); late > ttl {
		t.Fatalf("loss declared %v after the last renewal landed, after the store's expiry at %v", late, ttl)
	}
	store.hang.Store(false)
	tick(t, clock, 1) // joins again
	if again := <-n.joined; again.Generation <= first.Generation {
		t.Fatalf("joined again at generation %d", again.Generation)
	}
}

// TestALossRemovesTheOldRecord: a node that gives its membership up while
// the store still lists it — its renewals landed but their answers were
// lost — removes the record, so that the others stop sending it work.
func TestALossRemovesTheOldRecord(t *testing.T) {
	clock := testkit.NewManualClock(time.Unix(0, 0))
	store := &lostAnswers{Store: memory.New(clock)}
	n := start(t, store, clock, "a")
	first := <-n.joined
	store.drop.Store(true)
	for range 3 {
		tick(t, clock, 1)
	}
	if err := <-n.lost; err == nil {
		t.Fatal("a loss without a cause")
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		ms, _ := store.Members(ctxFor(t))
		for _, m := range ms {
			if m.ID == first.ID {
				return false
			}
		}
		return true
	})
}

// lostAnswers renews, but answers as if the network failed.
type lostAnswers struct {
	*memory.Store
	drop atomic.Bool
}

func (s *lostAnswers) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	err := s.Store.Renew(ctx, id, generation, ttl)
	if s.drop.Load() {
		return errors.New("connection reset")
	}
	return err
}

// counted tells of each renewal that landed.
type counted struct {
	*memory.Store
	renewed chan struct{}
}

func (s *counted) Renew(ctx context.Context, id string, generation int64, ttl time.Duration) error {
	err := s.Store.Renew(ctx, id, generation, ttl)
	if err == nil {
		s.renewed <- struct{}{}
	}
	return err
}

package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/composable-go/composable"
)

// Config configures [Start].
type Config struct {
	// Store keeps the member records. Required.
	Store Store
	// Name names the node; each join records it under a new member id,
	// Name-Generation. Required.
	Name string
	// Address is where other nodes reach this one.
	Address string
	// Kinds are the kinds of actors this node hosts.
	Kinds []string
	// TTL is how long a record lives without renewal. The node renews
	// every TTL/3. Default 6s.
	TTL time.Duration
	// Poll is how often the member list is read (and whenever the store
	// hints at a change). Default TTL/3.
	Poll time.Duration
	// Clock times renewals and polls. Default the system clock.
	Clock composable.Clock
	// Logger receives membership changes and failures. Default
	// slog.Default().
	Logger *slog.Logger
	// The callbacks run on the membership's own goroutines, one at a
	// time per kind; they must not call Close, which waits for those
	// goroutines (stop the node from a goroutine of its own).
	//
	// OnJoined is called with the node's record after each join.
	OnJoined func(Member)
	// OnLost is called when the node lost its membership — its record
	// expired, or no renewal landed for TTL less a tenth — with the
	// record and why. The node must stop hosting before OnLost returns: another
	// node may own its identities now. The node then joins again.
	OnLost func(Member, error)
	// OnView is called with each new list of members alive, by
	// generation.
	OnView func([]Member)
}

// Membership is a node's membership, kept up by its own goroutines until
// Close. Its methods are safe for concurrent use.
type Membership struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	joined time.Time // when the first join started

	mu      sync.Mutex
	self    Member
	alive   bool
	view    []Member
	changed chan struct{} // closed and replaced when view changes
	epoch   uint64        // counts changes of view and of self
	kick    chan struct{} // the heartbeat asks the watcher to read the list now
}

// Start joins the cluster and keeps the membership up until Close. It
// returns an error, having joined nothing, if cfg is invalid or the first
// join fails; ctx bounds that join only.
func Start(ctx context.Context, cfg Config) (*Membership, error) {
	if cfg.Store == nil || cfg.Name == "" {
		return nil, fmt.Errorf("%w: Config needs a Store and a Name", ErrInvalid)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 6 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = cfg.TTL / 3
	}
	if cfg.Clock == nil {
		cfg.Clock = composable.SystemClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Membership{cfg: cfg, kick: make(chan struct{}, 1), changed: make(chan struct{})}
	if err := Validate(Member{Name: cfg.Name, Address: cfg.Address, Kinds: cfg.Kinds}, cfg.TTL); err != nil {
		return nil, err
	}
	joined, err := m.join(ctx)
	if err != nil {
		return nil, err
	}
	m.joined = joined
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.heartbeat(runCtx) }()
	go func() { defer m.wg.Done(); m.watch(runCtx) }()
	return m, nil
}

// Self returns the node's current record, and false while it is out —
// between a loss and the next join.
func (m *Membership) Self() (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self, m.alive
}

// Token returns the node's fence token — its member id and generation —
// and false while it is out.
func (m *Membership) Token() (id string, generation int64, ok bool) {
	self, ok := m.Self()
	return self.ID, self.Generation, ok
}

// View returns the last member list read.
func (m *Membership) View() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.view
}

// Epoch counts the changes of View and of the node's own record (a loss,
// a join): it moves whenever what this node owns may have.
func (m *Membership) Epoch() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch
}

// Changed returns a channel closed when View next changes.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Close stops renewing and leaves: the other nodes see this one gone at
// once. It returns the error of leaving, if any.
func (m *Membership) Close() error {
	m.cancel()
	m.wg.Wait()
	self, alive := m.Self()
	if !alive {
		return nil
	}
	m.mu.Lock()
	m.alive = false
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.TTL)
	defer cancel()
	if err := m.cfg.Store.Leave(ctx, self.ID, self.Generation); err != nil {
		return fmt.Errorf("membership: leave as %s: %w", self.ID, err)
	}
	return nil
}

// join records a new member for this node; it returns when it started,
// the time the record's life is counted from at the latest.
func (m *Membership) join(ctx context.Context) (time.Time, error) {
	start := m.cfg.Clock.Now()
	rec, err := m.cfg.Store.Join(ctx, Member{Name: m.cfg.Name, Address: m.cfg.Address, Kinds: m.cfg.Kinds}, m.cfg.TTL)
	if err != nil {
		return start, fmt.Errorf("membership: join as %s: %w", m.cfg.Name, err)
	}
	m.mu.Lock()
	m.self, m.alive = rec, true
	m.epoch++
	m.mu.Unlock()
	m.cfg.Logger.Info("membership: joined", "member", rec.ID, "generation", rec.Generation, "address", rec.Address)
	if m.cfg.OnJoined != nil {
		m.cfg.OnJoined(rec)
	}
	m.poke()
	return start, nil
}

// poke asks the watcher to read the member list now.
func (m *Membership) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// heartbeat renews every TTL/3, and gives the membership up at its
// deadline: TTL less a tenth after the start of the last renewal (or
// join) that landed — before the store, whose record lives TTL from when
// it took that renewal, can expire it. Renewals run in the background,
// one at a time, so that one that hangs never holds the deadline back. A
// record the store says expired is a loss at once. After a loss the node
// joins again, retrying every TTL/3 until it can.
func (m *Membership) heartbeat(ctx context.Context) {
	every, margin := m.cfg.TTL/3, m.cfg.TTL/10
	deadline := m.joined.Add(m.cfg.TTL - margin)
	next := m.joined.Add(every)
	type renewal struct {
		seq   int
		start time.Time
		err   error
	}
	results := make(chan renewal)
	seq := 0
	var cancelRenewal context.CancelFunc // of the renewal in flight; nil when none
	defer func() {
		if cancelRenewal != nil {
			cancelRenewal()
		}
	}()
	// handle takes a renewal's answer.
	handle := func(r renewal) {
		if r.seq != seq {
			return // a renewal given up on
		}
		cancelRenewal()
		cancelRenewal = nil
		self, alive := m.Self()
		switch {
		case !alive:
		case r.err == nil:
			deadline = r.start.Add(m.cfg.TTL - margin)
		case errors.Is(r.err, ErrExpired):
			m.lose(ctx, self, r.err)
			next = m.cfg.Clock.Now().Add(every)
		case ctx.Err() == nil:
			m.cfg.Logger.Warn("membership: renewal failed; retrying", "member", self.ID, "error", r.err)
		}
	}
	// wait waits until the clock reads until, taking answers meanwhile;
	// it reports false when ctx ended.
	wait := func(until time.Time) bool {
		for {
			timer, stop := m.timer(until.Sub(m.cfg.Clock.Now()))
			select {
			case <-ctx.Done():
				stop()
				return false
			case r := <-results:
				stop()
				handle(r) // and wait on: until may have moved no closer
			case <-timer:
				stop()
				return true
			}
		}
	}
	for {
		_, alive := m.Self()
		wake := next
		if alive && deadline.Before(wake) {
			wake = deadline
		}
		if !wait(wake) {
			return
		}
		self, alive := m.Self()
		now := m.cfg.Clock.Now()
		switch {
		case !alive:
			start, err := m.join(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				m.cfg.Logger.Warn("membership: cannot join again; retrying", "error", err)
				next = now.Add(every)
				continue
			}
			deadline, next = start.Add(m.cfg.TTL-margin), start.Add(every)
		case !now.Before(deadline):
			if cancelRenewal != nil { // given up on
				cancelRenewal()
				cancelRenewal = nil
				seq++
			}
			m.lose(ctx, self, fmt.Errorf("%w: no renewal landed within %v", ErrExpired, m.cfg.TTL-margin))
			next = now.Add(every)
		case now.Before(next):
			// Woken for a deadline that moved: a renewal landed.
		case cancelRenewal != nil:
			// The last renewal has not answered: its answer comes first,
			// or the deadline; then the next renewal is due at once.
			timer, stop := m.timer(deadline.Sub(now))
			select {
			case <-ctx.Done():
				stop()
				return
			case r := <-results:
				handle(r)
			case <-timer:
			}
			stop()
		default:
			next = now.Add(every)
			seq++
			rctx, cancel := context.WithCancel(ctx)
			cancelRenewal = cancel
			m.wg.Add(1)
			go func(seq int, start time.Time) {
				defer m.wg.Done()
				err := m.cfg.Store.Renew(rctx, self.ID, self.Generation, m.cfg.TTL)
				select {
				case results <- renewal{seq, start, err}:
				case <-ctx.Done():
				}
			}(seq, now)
		}
	}
}

// lose reports the loss of self's membership, then removes its record if
// the store can be reached — so that the others stop sending it work
// before the record would expire.
func (m *Membership) lose(ctx context.Context, self Member, err error) {
	m.mu.Lock()
	m.alive = false
	m.epoch++
	m.mu.Unlock()
	m.cfg.Logger.Error("membership: lost; the node stops hosting and joins again", "member", self.ID, "generation", self.Generation, "error", err)
	if m.cfg.OnLost != nil {
		m.cfg.OnLost(self, err)
	}
	lctx, cancel := context.WithTimeout(ctx, m.cfg.TTL/3)
	_ = m.cfg.Store.Leave(lctx, self.ID, self.Generation) // best effort: it expires anyway
	cancel()
	m.poke()
}

// watch reads the member list every Poll, when the store hints at a
// change and when the heartbeat asks, and reports each new view.
func (m *Membership) watch(ctx context.Context) {
	changes, _ := m.cfg.Store.(Changes)
	for {
		var hint <-chan struct{}
		if changes != nil {
			hint = changes.MembersChanged() // before reading: a change after the read wakes us
		}
		members, err := m.cfg.Store.Members(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.cfg.Logger.Warn("membership: cannot read the members; retrying", "error", err)
		} else {
			m.mu.Lock()
			changed := !SameView(m.view, members)
			if changed {
				m.view = members
				m.epoch++
				close(m.changed)
				m.changed = make(chan struct{})
			}
			m.mu.Unlock()
			if changed && m.cfg.OnView != nil {
				m.cfg.OnView(members)
			}
		}
		timer, stop := m.timer(m.cfg.Poll)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-timer:
		case <-hint:
		case <-m.kick:
		}
		stop()
	}
}

func (m *Membership) timer(d time.Duration) (<-chan time.Time, func()) {
	if tc, ok := m.cfg.Clock.(composable.TimerClock); ok {
		return tc.NewTimer(d)
	}
	return m.cfg.Clock.After(d), func() {}
}

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
	// OnJoined is called with the node's record after each join.
	OnJoined func(Member)
	// OnLost is called when the node lost its membership — its record
	// expired, or it could not renew for a whole TTL — with the record
	// and why. The node must stop hosting before OnLost returns: another
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

	mu    sync.Mutex
	self  Member
	alive bool
	view  []Member
	kick  chan struct{} // the heartbeat asks the watcher to read the list now
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
	m := &Membership{cfg: cfg, kick: make(chan struct{}, 1)}
	if err := Validate(Member{Name: cfg.Name, Address: cfg.Address, Kinds: cfg.Kinds}, cfg.TTL); err != nil {
		return nil, err
	}
	if err := m.join(ctx); err != nil {
		return nil, err
	}
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

// join records a new member for this node.
func (m *Membership) join(ctx context.Context) error {
	rec, err := m.cfg.Store.Join(ctx, Member{Name: m.cfg.Name, Address: m.cfg.Address, Kinds: m.cfg.Kinds}, m.cfg.TTL)
	if err != nil {
		return fmt.Errorf("membership: join as %s: %w", m.cfg.Name, err)
	}
	m.mu.Lock()
	m.self, m.alive = rec, true
	m.mu.Unlock()
	m.cfg.Logger.Info("membership: joined", "member", rec.ID, "generation", rec.Generation, "address", rec.Address)
	if m.cfg.OnJoined != nil {
		m.cfg.OnJoined(rec)
	}
	m.poke()
	return nil
}

// poke asks the watcher to read the member list now.
func (m *Membership) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// heartbeat renews every TTL/3. A record that expired, or a whole TTL
// without a renewal known to have landed, is a loss: reported, then the
// node joins again, retrying every TTL/3 until it can.
func (m *Membership) heartbeat(ctx context.Context) {
	every := m.cfg.TTL / 3
	lastOK := m.cfg.Clock.Now() // the start of the last renewal that landed
	for {
		if !m.sleep(ctx, every) {
			return
		}
		self, alive := m.Self()
		if !alive {
			if err := m.join(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Logger.Warn("membership: cannot join again; retrying", "error", err)
				continue
			}
			lastOK = m.cfg.Clock.Now()
			continue
		}
		start := m.cfg.Clock.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := m.cfg.Store.Renew(rctx, self.ID, self.Generation, m.cfg.TTL)
		cancel()
		switch {
		case err == nil:
			lastOK = start
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrExpired):
			m.lose(self, err)
		case m.cfg.Clock.Now().Sub(lastOK) >= m.cfg.TTL:
			m.lose(self, fmt.Errorf("%w: no renewal for %v: %w", ErrExpired, m.cfg.TTL, err))
		default:
			m.cfg.Logger.Warn("membership: renewal failed; retrying", "member", self.ID, "error", err)
		}
	}
}

// lose reports the loss of self's membership.
func (m *Membership) lose(self Member, err error) {
	m.mu.Lock()
	m.alive = false
	m.mu.Unlock()
	m.cfg.Logger.Error("membership: lost; the node stops hosting and joins again", "member", self.ID, "generation", self.Generation, "error", err)
	if m.cfg.OnLost != nil {
		m.cfg.OnLost(self, err)
	}
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

// sleep waits d on the clock; it reports false if ctx ended first.
func (m *Membership) sleep(ctx context.Context, d time.Duration) bool {
	timer, stop := m.timer(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer:
		return true
	}
}

func (m *Membership) timer(d time.Duration) (<-chan time.Time, func()) {
	if tc, ok := m.cfg.Clock.(composable.TimerClock); ok {
		return tc.NewTimer(d)
	}
	return m.cfg.Clock.After(d), func() {}
}

package actor

import (
	"context"
	"log/slog"
	"sync"

	protoactor "github.com/asynkron/protoactor-go/actor"
)

// System owns the actors of one process: the protoactor-go actor system and
// every [Store] spawned on it. Close stops them all. A System is safe for
// concurrent use.
type System struct {
	as     *protoactor.ActorSystem
	logger *slog.Logger

	mu     sync.Mutex
	closed bool
	stores map[stopper]struct{}
}

// stopper is what the system needs from a store to shut it down.
type stopper interface{ Close() error }

// SystemOption configures a [System].
type SystemOption func(*systemOptions)

type systemOptions struct {
	logger *slog.Logger
}

// WithLogger sets the logger for the system and its stores (panics in
// effects, supervision decisions). protoactor-go's own messages go to it too,
// from level Warn up. The default is [slog.Default].
func WithLogger(l *slog.Logger) SystemOption {
	return func(o *systemOptions) { o.logger = l }
}

// NewSystem starts an actor system. It starts no goroutines of its own;
// actors run on goroutines only while they have messages.
func NewSystem(opts ...SystemOption) *System {
	o := systemOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	libLogger := slog.New(minLevel{Handler: o.logger.Handler(), min: slog.LevelWarn}).With("lib", "protoactor")
	as := protoactor.NewActorSystem(protoactor.WithLoggerFactory(func(*protoactor.ActorSystem) *slog.Logger {
		return libLogger
	}))
	return &System{as: as, logger: o.logger, stores: make(map[stopper]struct{})}
}

// ActorSystem returns the underlying protoactor-go system, for code that
// works with protoactor actors directly (clustering, test probes). Stores do
// not need it.
func (s *System) ActorSystem() *protoactor.ActorSystem { return s.as }

// Close closes every store spawned on the system (see [Store.Close]) and
// shuts the actor system down. It is idempotent.
func (s *System) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	stores := make([]stopper, 0, len(s.stores))
	for st := range s.stores {
		stores = append(stores, st)
	}
	s.mu.Unlock()

	for _, st := range stores {
		_ = st.Close()
	}
	s.as.Shutdown()
	return nil
}

func (s *System) adopt(st stopper) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStopped
	}
	s.stores[st] = struct{}{}
	return nil
}

func (s *System) forget(st stopper) {
	s.mu.Lock()
	delete(s.stores, st)
	s.mu.Unlock()
}

// minLevel drops records below min; it keeps protoactor's chatter out of the
// user's logs.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

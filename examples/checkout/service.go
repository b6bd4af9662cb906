package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/actor"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/bus/relay"
	"github.com/composable-go/composable/examples/internal/app"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// domainTypes are the aggregate types whose events the relay publishes:
// the service's to share. The saga's own streams — its instances' — are
// bookkeeping that no consumer reads from the bus.
func domainTypes() []string { return []string{orderType, paymentType, inventoryType} }

// domainEvent reports whether the relay publishes e.
func domainEvent(e persistence.RecordedEvent) bool {
	typ, _, _ := strings.Cut(e.StreamID, "/")
	return slices.Contains(domainTypes(), typ)
}

// busTopic is the topic the relay publishes e to: the events of stream
// "order/1001" go to "events.order".
func busTopic(e persistence.RecordedEvent) string { return relay.TopicByType(topicPrefix)(e) }

// domainTopics are the topics the relay publishes to.
func domainTopics() []string {
	topics := domainTypes()
	for i, t := range topics {
		topics[i] = topicPrefix + t
	}
	return topics
}

// eventBus is what the service needs of a bus: the relay publishes to it,
// the saga consumes from it.
type eventBus interface {
	bus.Publisher
	bus.Subscriber
}

// settings are the parts of a service that tests and the demo choose.
type settings struct {
	clock              composable.Clock // the runtime's: saga timers, retries
	reservationTimeout time.Duration
	payments           PaymentEnv
	logger             *slog.Logger
	// sagaFeed, if set, wraps the bus subscription the saga consumes (the
	// demo prints the deliveries).
	sagaFeed func(bus.Subscriber) bus.Subscriber
}

// defaultPayments are the provider's rules in the demo and the tests.
var defaultPayments = PaymentEnv{Limit: 500_00, DeclinedCards: []string{cardDeclined}}

// Card tokens of the demo: one the provider accepts, one it declines.
const (
	cardOK       = "tok_visa"
	cardDeclined = "tok_chargeDeclined"
)

// service is one process of the shop: the three aggregates and the
// checkout saga on an aggregate runtime, and the production path of the
// events — the relay publishing the aggregates' events from the store's
// feed to the bus, the saga consuming them. A service is safe for concurrent use.
type service struct {
	store     persistence.EventStore
	sys       *actor.System
	rt        *aggregate.Runtime
	orders    *aggregate.Type[Order, OrderCommand, OrderEvent, struct{}]
	payments  *aggregate.Type[Payment, PaymentCommand, PaymentEvent, PaymentEnv]
	inventory *aggregate.Type[Inventory, InventoryCommand, InventoryEvent, struct{}]
	checkouts *saga.Saga[Checkout, CheckoutEvent, CheckoutEnv]
	relay     *relay.Relay
	sub       bus.Subscriber
}

// openService hosts the aggregates and the saga over be and b. Nothing
// moves on the bus until Run.
func openService(be app.Backend, b eventBus, s settings) (*service, error) {
	orderDef, err1 := newOrderDefinition()
	paymentDef, err2 := newPaymentDefinition(s.payments)
	inventoryDef, err3 := newInventoryDefinition()
	checkoutDef, err4 := newCheckoutSaga(s.reservationTimeout)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	r, err := relay.New(relay.Config{
		Store: be.Store, Publisher: b, Checkpoints: be.Checkpoints, Lease: be.Lease,
		Topic: busTopic, Include: domainEvent, Logger: s.logger,
	})
	if err != nil {
		return nil, err
	}
	svc := &service{store: be.Store, relay: r, sub: b}
	if s.sagaFeed != nil {
		svc.sub = s.sagaFeed(b)
	}
	svc.sys = actor.NewSystem(actor.WithLogger(s.logger))
	svc.rt = aggregate.NewRuntime(svc.sys, be.Store, aggregate.WithClock(s.clock), aggregate.WithLogger(s.logger))
	if svc.orders, err = aggregate.Register(svc.rt, orderDef, aggregate.Options{}); err == nil {
		if svc.payments, err = aggregate.Register(svc.rt, paymentDef, aggregate.Options{}); err == nil {
			if svc.inventory, err = aggregate.Register(svc.rt, inventoryDef, aggregate.Options{}); err == nil {
				svc.checkouts, err = saga.Register(svc.rt, checkoutDef, nil, saga.Options{})
			}
		}
	}
	if err != nil {
		return nil, errors.Join(err, svc.Close())
	}
	return svc, nil
}

// Run relays the store's feed to the bus and feeds the saga from it until
// ctx ends, then returns nil. (Instances a previous process left running
// need nothing: the runtime's timer scheduler fires their timers and the
// guards of their pending commands.) If either stops with an error, Run
// stops the other and returns it.
func (s *service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var relayErr, sagaErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		if err := s.relay.Run(ctx); err != nil {
			relayErr = fmt.Errorf("relay: %w", err)
		}
	})
	wg.Go(func() {
		defer cancel()
		if err := s.checkouts.Run(ctx, s.sub); err != nil {
			sagaErr = fmt.Errorf("checkout saga: %w", err)
		}
	})
	wg.Wait()
	return errors.Join(relayErr, sagaErr)
}

// Close answers the commands in flight, then stops every actor — sagas
// waiting on a command or a timer included: they resume when a service
// opens over the same store. It closes neither the store nor the bus.
func (s *service) Close() error {
	return errors.Join(s.rt.Close(), s.sys.Close())
}

// start runs the service in the background until stop, which waits for
// it, closes it and returns what stopped it. running ends when the service
// stops — on stop, or on its own when the relay or the saga fails — so that
// whoever drives the service does not wait for a dead one.
func (s *service) start(ctx context.Context) (running context.Context, stop func() error) {
	running, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		err := s.Run(running)
		cancel()
		done <- err
	}()
	var once sync.Once
	var err error
	return running, func() error {
		once.Do(func() {
			cancel()
			err = errors.Join(<-done, s.Close())
		})
		return err
	}
}

// awaitEnd waits until the checkout of order has completed or failed, for
// at most timeout.
func (s *service) awaitEnd(ctx context.Context, order string, timeout time.Duration) (saga.Instance[Checkout], error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inst, err := s.checkouts.Wait(ctx, order)
	if err != nil {
		return inst, fmt.Errorf("checkout %s still %s: %w", order, inst.Status, err)
	}
	return inst, nil
}

// poll calls cond every millisecond until it reports true or fails, or
// timeout passes: for the states along the way, which nothing announces.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

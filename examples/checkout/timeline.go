package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/saga"
)

// timeline prints what the service does, one line per step, by reading
// the event store's global feed — the feed the relay publishes from — so it
// shows exactly what was committed, in commit order: the aggregates'
// events and the saga's own stream, whose events record each command it
// dispatched, each outcome, each timer armed, disarmed or fired, and each
// compensation. Deliveries from the bus to the saga are printed by the
// subscriber that tap returns, after the event they deliver. A timeline is
// safe for concurrent use.
type timeline struct {
	out   io.Writer
	store persistence.EventStore
	clock composable.Clock
	// events decode the aggregates' events by aggregate type; sagaEvents
	// and sagaCommands the saga's own events and commands.
	events                   map[string]*persistence.Registry
	sagaEvents, sagaCommands *persistence.Registry
	sagaTopics               []string

	mu      sync.Mutex
	start   time.Time // offsets count from the last header
	printed int64     // global position of the last event handled
	// undelivered holds the positions of the events printed that the
	// relay publishes to the saga's topics and the saga has not handled.
	undelivered map[int64]bool
	moved       chan struct{} // closed and replaced when printed or undelivered moves

	// consuming is closed at the saga's first delivery from the bus.
	consuming chan struct{}
	once      sync.Once
}

// newTimeline prints to out what happens in store, timed by clock.
func newTimeline(out io.Writer, store persistence.EventStore, clock composable.Clock) (*timeline, error) {
	orderDef, err1 := newOrderDefinition()
	paymentDef, err2 := newPaymentDefinition(PaymentEnv{})
	inventoryDef, err3 := newInventoryDefinition()
	checkoutDef, err4 := newCheckoutSaga(0)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	return &timeline{
		out: out, store: store, clock: clock, start: clock.Now(),
		events:     map[string]*persistence.Registry{orderType: orderDef.Events, paymentType: paymentDef.Events, inventoryType: inventoryDef.Events},
		sagaEvents: checkoutDef.Events, sagaCommands: checkoutDef.Commands, sagaTopics: checkoutDef.Topics,
		undelivered: map[int64]bool{}, moved: make(chan struct{}), consuming: make(chan struct{}),
	}, nil
}

// skipHistory makes the timeline start at the end of the feed as it
// stands: earlier runs of the demo over PostgreSQL are history.
func (tl *timeline) skipHistory(ctx context.Context) error {
	head, err := feedHead(ctx, tl.store, 0)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.printed = head
	return err
}

// run prints the feed until ctx ends.
func (tl *timeline) run(ctx context.Context) error {
	tl.mu.Lock()
	from := tl.printed
	tl.mu.Unlock()
	return persistence.Subscribe(ctx, tl.store, from, persistence.SubscribeOptions{PollInterval: 20 * time.Millisecond},
		func(_ context.Context, events []persistence.RecordedEvent) error {
			for _, e := range events {
				tl.print(e)
			}
			return nil
		})
}

// feedHead returns the position of the last event in store, reading on
// from after.
func feedHead(ctx context.Context, store persistence.EventStore, after int64) (int64, error) {
	head := after
	for {
		events, err := store.ReadAll(ctx, head, 1000)
		if err != nil || len(events) == 0 {
			return head, err
		}
		head = events[len(events)-1].GlobalPosition
	}
}

// header starts a section; offsets count from here.
func (tl *timeline) header(title string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.start = tl.clock.Now()
	fmt.Fprintf(tl.out, "\n── %s %s\n", title, strings.Repeat("─", max(3, 96-len([]rune(title)))))
}

// line prints one step; the caller holds mu.
func (tl *timeline) line(source, kind, detail string) {
	fmt.Fprintf(tl.out, "  %8s  %-25s %-8s %s\n", fmt.Sprintf("+%.3fs", tl.clock.Now().Sub(tl.start).Seconds()), source, kind, detail)
}

// note prints a step that is not in the feed: what the demo itself does.
func (tl *timeline) note(source, kind, detail string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.line(source, kind, detail)
}

// printf prints a free-form line.
func (tl *timeline) printf(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	fmt.Fprintf(tl.out, format, args...)
}

// waitFor waits until the timeline has printed the feed up to pos.
func (tl *timeline) waitFor(ctx context.Context, pos int64) error {
	for {
		tl.mu.Lock()
		printed, moved := tl.printed, tl.moved
		tl.mu.Unlock()
		if printed >= pos {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUp waits until everything stored so far is printed.
func (tl *timeline) catchUp(ctx context.Context) error {
	tl.mu.Lock()
	printed := tl.printed
	tl.mu.Unlock()
	head, err := feedHead(ctx, tl.store, printed)
	if err != nil {
		return err
	}
	return tl.waitFor(ctx, head)
}

// settle waits until the saga has handled every event printed that the
// relay publishes to its topics: so that a late delivery, one the saga
// ignores, is not printed in the next section.
func (tl *timeline) settle(ctx context.Context) error {
	for {
		tl.mu.Lock()
		n, moved := len(tl.undelivered), tl.moved
		tl.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("%d events never reached the saga: %w", n, ctx.Err())
		}
	}
}

// delivered records that the saga handled the event at pos.
func (tl *timeline) delivered(pos int64) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	delete(tl.undelivered, pos)
	close(tl.moved)
	tl.moved = make(chan struct{})
}

// print prints one event of the feed.
func (tl *timeline) print(e persistence.RecordedEvent) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	defer func() {
		tl.printed = e.GlobalPosition
		close(tl.moved)
		tl.moved = make(chan struct{})
	}()
	if domainEvent(e) && slices.Contains(tl.sagaTopics, busTopic(e)) {
		tl.undelivered[e.GlobalPosition] = true
	}
	typ, _, _ := strings.Cut(e.StreamID, "/")
	if reg, ok := tl.events[typ]; ok {
		tl.line(e.StreamID, "event", tl.decode(reg, e.EventData))
		return
	}
	if typ == "saga-"+checkoutType {
		kind, detail := tl.sagaStep(e)
		tl.line(e.StreamID, kind, detail)
	}
	// Anything else is bookkeeping.
}

// The saga framework's own events, as it stores them in an instance's
// stream. Package saga does not export them (only saga.Pending, the
// recorded command), so the timeline reads their stored JSON by type name:
// it follows the framework's storage format, not an API.
type (
	sagaRecorded struct {
		Type          string
		SchemaVersion int
		Data          []byte
	}
	sagaDispatched struct{ Command saga.Pending }
	sagaResulted   struct {
		Step, Error string
		Rejected    bool // a business refusal; Error is the handler's message
	}
	sagaTimer struct {
		Name string
		Due  time.Time
	}
	sagaEnd struct {
		Status saga.Status
		Reason string
	}
)

// sagaStep describes one event of the saga's stream.
func (tl *timeline) sagaStep(e persistence.RecordedEvent) (kind, detail string) {
	var (
		rec  sagaRecorded
		disp sagaDispatched
		res  sagaResulted
		tm   sagaTimer
		end  sagaEnd
	)
	unmarshal := func(v any) bool { return json.Unmarshal(e.Data, v) == nil }
	switch {
	case e.Type == "saga.started":
		return "saga", "started"
	case e.Type == "saga.recorded" && unmarshal(&rec):
		return "saga", "records " + tl.decode(tl.sagaEvents, persistence.EventData{Type: rec.Type, SchemaVersion: rec.SchemaVersion, Data: rec.Data})
	case e.Type == "saga.dispatched" && unmarshal(&disp):
		p := disp.Command
		what := fmt.Sprintf("%-18s %s → %s/%s", p.Step, tl.command(p), p.Aggregate, p.ID)
		if step, ok := undoes(p.Step); ok {
			return "undo", fmt.Sprintf("%s (undoes step %s)", what, step)
		}
		if p.Compensation != nil {
			what += fmt.Sprintf("   undo: %s", tl.command(*p.Compensation))
		}
		return "command", what
	case e.Type == "saga.resulted" && unmarshal(&res):
		switch {
		case res.Rejected:
			return "result", fmt.Sprintf("%-18s refused: %s", res.Step, res.Error)
		case res.Error != "":
			return "result", fmt.Sprintf("%-18s failed: %s", res.Step, res.Error)
		}
		return "result", fmt.Sprintf("%-18s ok", res.Step)
	case e.Type == "saga.timer-scheduled" && unmarshal(&tm):
		return "timer", fmt.Sprintf("%s armed: fires at +%.3fs", tm.Name, tm.Due.Sub(tl.start).Seconds())
	case e.Type == "saga.timer-cancelled" && unmarshal(&tm):
		return "timer", tm.Name + " disarmed"
	case e.Type == "saga.timer-fired" && unmarshal(&tm):
		return "timer", tm.Name + " FIRED"
	case e.Type == "saga.compensating" && unmarshal(&end):
		return "saga", "compensating, newest step first: " + end.Reason
	case e.Type == "saga.ended" && unmarshal(&end):
		if end.Reason != "" {
			return "saga", fmt.Sprintf("%s: %s", strings.ToUpper(end.Status.String()), end.Reason)
		}
		return "saga", strings.ToUpper(end.Status.String())
	}
	return "saga", e.Type
}

// undoes reports the step whose compensation is dispatched as step.
func undoes(step string) (string, bool) {
	for _, s := range []string{stepReserve, stepCharge} { // the steps with an undo
		if step == saga.CompensationStep(s) {
			return s, true
		}
	}
	return "", false
}

// command decodes a command the saga recorded.
func (tl *timeline) command(p saga.Pending) string {
	return tl.decode(tl.sagaCommands, persistence.EventData{Type: p.Type, SchemaVersion: p.SchemaVersion, Data: p.Data})
}

func (tl *timeline) decode(reg *persistence.Registry, data persistence.EventData) string {
	v, err := reg.Unmarshal(data)
	if err != nil {
		return fmt.Sprintf("%s (%v)", data.Type, err)
	}
	return describe(v)
}

// tap wraps the bus subscription of the saga: each delivery the saga
// routes to an instance is printed, once the timeline has printed the
// event itself, before the saga handles it.
func (tl *timeline) tap(sub bus.Subscriber) bus.Subscriber {
	return tappedSubscriber{Subscriber: sub, tl: tl}
}

type tappedSubscriber struct {
	bus.Subscriber
	tl *timeline
}

// Subscribe implements bus.Subscriber.
func (s tappedSubscriber) Subscribe(ctx context.Context, group string, topics []string, h bus.Handler) error {
	return s.Subscriber.Subscribe(ctx, group, topics, func(ctx context.Context, d bus.Delivery) error {
		s.tl.once.Do(func() { close(s.tl.consuming) })
		if err := s.tl.waitFor(ctx, d.Event.GlobalPosition); err != nil {
			return err
		}
		if ev, err := s.tl.sagaEvents.Unmarshal(d.Event.EventData); err == nil && routeCheckout(ev, d.Event.Metadata).Mode != saga.Ignore {
			s.tl.note("bus", "deliver", fmt.Sprintf("%s → group %s (topic %s, partition %d, offset %d)",
				strings.TrimPrefix(fmt.Sprintf("%T", ev), "main."), group, d.Topic, d.Partition, d.Offset))
		}
		if err := h(ctx, d); err != nil {
			return err // delivered again
		}
		s.tl.delivered(d.Event.GlobalPosition)
		return nil
	})
}

// describe prints a command or event as Type{Field:value ...}.
func describe(v any) string { return strings.TrimPrefix(fmt.Sprintf("%T%+v", v, v), "main.") }

package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// testGlobalFeedOrder has 100 writers append to their own and to shared
// streams while a reader follows the global feed. The reader must see every
// committed event exactly once, in strictly increasing positions, with each
// stream in version order.
func testGlobalFeedOrder(t *testing.T, s Store) {
	const (
		writers   = 100
		perWriter = 10
		shared    = 5 // streams every writer also appends to, with Any
		total     = writers * perWriter
	)
	ctx := ctxFor(t)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	var (
		mu      sync.Mutex
		seen    []persistence.RecordedEvent
		reached = make(chan struct{})
	)
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- persistence.Subscribe(readCtx, s, 0, persistence.SubscribeOptions{BatchSize: 37, PollInterval: time.Millisecond},
			func(_ context.Context, events []persistence.RecordedEvent) error {
				mu.Lock()
				defer mu.Unlock()
				before := len(seen)
				seen = append(seen, events...)
				if before < total && len(seen) >= total {
					close(reached)
				}
				return nil
			})
	}()

	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("writer-%d", w)
			for i := range perWriter {
				var err error
				if i%2 == 0 {
					_, err = s.Append(ctx, own, persistence.ExpectedVersion(i/2), ev(fmt.Sprintf("%s-%d", own, i)))
				} else {
					_, err = s.Append(ctx, fmt.Sprintf("shared-%d", (w+i)%shared), persistence.Any, ev(fmt.Sprintf("%s-%d", own, i)))
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		t.Fatalf("reader saw %d of %d events", n, total)
	}
	stopReading()
	if err := <-readerDone; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	if len(seen) != total {
		t.Fatalf("reader saw %d events, want %d", len(seen), total)
	}
	ids := make(map[string]bool, total)
	lastVersion := map[string]int64{}
	for i, e := range seen {
		if ids[e.ID] {
			t.Fatalf("event %s seen twice", e.ID)
		}
		ids[e.ID] = true
		if i > 0 && e.GlobalPosition <= seen[i-1].GlobalPosition {
			t.Fatalf("positions not strictly increasing: %d then %d", seen[i-1].GlobalPosition, e.GlobalPosition)
		}
		if e.Version != lastVersion[e.StreamID]+1 {
			t.Fatalf("stream %s: version %d after %d", e.StreamID, e.Version, lastVersion[e.StreamID])
		}
		lastVersion[e.StreamID] = e.Version
	}
	if got := readAll(t, s); !sameIDs(got, seen) {
		t.Fatal("the followed feed differs from a fresh read of the feed")
	}
}

func testSubscribe(t *testing.T, s Store) {
	ctx := ctxFor(t)
	mustAppend(t, s, "sub", persistence.NoStream, evs("old", 10)...)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan persistence.RecordedEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- persistence.Subscribe(subCtx, s, 0, persistence.SubscribeOptions{BatchSize: 4, PollInterval: 5 * time.Millisecond},
			func(_ context.Context, events []persistence.RecordedEvent) error {
				for _, e := range events {
					got <- e
				}
				return nil
			})
	}()
	receive := func(n int) []persistence.RecordedEvent {
		t.Helper()
		out := make([]persistence.RecordedEvent, 0, n)
		timeout := time.After(10 * time.Second)
		for len(out) < n {
			select {
			case e := <-got:
				out = append(out, e)
			case <-timeout:
				t.Fatalf("received %d of %d events", len(out), n)
			}
		}
		return out
	}
	history := receive(10)
	mustAppend(t, s, "sub", 10, evs("new", 5)...)
	live := receive(5)
	if history[0].ID != "id-old-0" || live[0].ID != "id-new-0" || live[4].Version != 15 {
		t.Fatalf("history %s.., live %s..%d", history[0].ID, live[0].ID, live[4].Version)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe returned %v after cancel, want nil", err)
	}

	// A handler error stops the subscription and is returned.
	boom := fmt.Errorf("handler failed")
	err := persistence.Subscribe(ctx, s, 0, persistence.SubscribeOptions{}, func(context.Context, []persistence.RecordedEvent) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Subscribe returned %v, want the handler's error", err)
	}
}

// testNotifier checks the wake-up hint of stores that offer one: a
// subscriber that would poll only once an hour still sees an append at once.
func testNotifier(t *testing.T, s Store) {
	if _, ok := s.(persistence.Notifier); !ok {
		t.Skip("the store does not implement persistence.Notifier")
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	mustAppend(t, s, "hinted", persistence.NoStream, ev("seed"))
	got := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		done <- persistence.Subscribe(ctx, s, 0, persistence.SubscribeOptions{PollInterval: time.Hour},
			func(_ context.Context, events []persistence.RecordedEvent) error {
				for _, e := range events {
					got <- e.ID
				}
				return nil
			})
	}()
	receive := func() string {
		select {
		case id := <-got:
			return id
		case <-time.After(20 * time.Second):
			t.Fatal("no event within 20s: the subscriber polls hourly, so no hint arrived")
			return ""
		}
	}
	if id := receive(); id != "id-seed" { // the first read
		t.Fatalf("got %s", id)
	}
	// The subscriber now waits on its hint and an hour-long timer.
	mustAppend(t, s, "hinted", 1, ev("woken"))
	if id := receive(); id != "id-woken" {
		t.Fatalf("got %s", id)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// testHead checks the head of stores that report one: 0 when empty, then
// the position of the last append.
func testHead(t *testing.T, s Store) {
	h, ok := s.(persistence.HeadReader)
	if !ok {
		t.Skip("the store does not implement persistence.HeadReader")
	}
	ctx := ctxFor(t)
	if head, err := h.Head(ctx); err != nil || head != 0 {
		t.Fatalf("empty store: head %d, %v", head, err)
	}
	mustAppend(t, s, "a", persistence.NoStream, ev("1"), ev("2"))
	res := mustAppend(t, s, "b", persistence.NoStream, ev("3"))
	if head, err := h.Head(ctx); err != nil || head != res.Position {
		t.Fatalf("head %d, %v; want %d", head, err, res.Position)
	}
}

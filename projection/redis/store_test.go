package redis_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/composable-go/composable/persistence"
	evmemory "github.com/composable-go/composable/persistence/memory"
	"github.com/composable-go/composable/projection"
	"github.com/composable-go/composable/projection/projectiontest"
	"github.com/composable-go/composable/projection/redis"
	"github.com/composable-go/composable/testkit"
	"github.com/composable-go/composable/testkit/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store under a key prefix of the test's own.
func newStore(t testing.TB, c *goredis.Client) *redis.Store {
	t.Helper()
	s, err := redis.New(c, redis.WithPrefix(redistest.Prefix(t, c, "proj")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the suite with the store's connections through a
// proxy the suite cuts; the harness reads directly.
func TestConformance(t *testing.T) {
	c := redistest.Client(t)
	projectiontest.Run(t, func(t *testing.T) projectiontest.Harness[*redis.Tx] {
		through, proxy := proxied(t)
		prefix := redistest.Prefix(t, c, "proj")
		s, err := redis.New(through, redis.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		reader, err := redis.New(c, redis.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		return projectiontest.Harness[*redis.Tx]{
			Store: s,
			Cut:   proxy.CutAll,
			Append: func(ctx context.Context, tx *redis.Tx, key, value string) error {
				return tx.Pipe().RPush(ctx, tx.Key(key), value).Err()
			},
			Read: func(ctx context.Context, name, key string) ([]string, error) {
				list, err := reader.Read(ctx, name, "LRANGE", key, 0, -1).StringSlice()
				if errors.Is(err, goredis.Nil) {
					return nil, nil
				}
				return list, err
			},
		}
	})
}

// counting counts events per stream in a hash, running hook first.
func counting(name string, hook func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error) projection.Projection[*redis.Tx] {
	return projection.Projection[*redis.Tx]{
		Name: name,
		Handle: func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
			if hook != nil {
				if err := hook(ctx, tx, e); err != nil {
					return err
				}
			}
			return tx.Pipe().HIncrBy(ctx, tx.Key("counts"), e.StreamID, 1).Err()
		},
	}
}

func assertModel(t *testing.T, s *redis.Store, name string, events []persistence.RecordedEvent) {
	t.Helper()
	ctx := ctxFor(t)
	flat, err := s.Read(ctx, name, "HGETALL", "counts").StringSlice() // scripts answer RESP2: a flat list
	if err != nil && !errors.Is(err, goredis.Nil) {
		t.Fatal(err)
	}
	got := map[string]string{}
	for i := 0; i+1 < len(flat); i += 2 {
		got[flat[i]] = flat[i+1]
	}
	want := map[string]string{}
	counts := map[string]int{}
	for _, e := range events {
		counts[e.StreamID]++
		want[e.StreamID] = strconv.Itoa(counts[e.StreamID])
	}
	if !maps.Equal(got, want) {
		t.Fatalf("model %v, want %v", got, want)
	}
	var last int64
	if len(events) > 0 {
		last = events[len(events)-1].GlobalPosition
	}
	if pos, err := s.Checkpoint(ctx, name); err != nil || pos != last {
		t.Fatalf("checkpoint %d (%v), want %d", pos, err, last)
	}
}

// proxied returns a client whose connections go through a proxy the test
// can cut.
func proxied(t *testing.T) (*goredis.Client, *testkit.TCPProxy) {
	t.Helper()
	proxy := testkit.NewTCPProxy(t, "127.0.0.1:6379")
	c := redistest.ClientOptions(t, func(o *goredis.Options) {
		o.Addr = proxy.Addr()
		o.MaxRetries = -1 // the store's caller retries; see the runner
	})
	return c, proxy
}

// TestReadAfterLostConnectionIsAStoreFailure: a handler's read on the
// batch's watched connection failing because the connection is gone is
// the store's failure, not the handler's (the suite cuts between writes).
func TestReadAfterLostConnectionIsAStoreFailure(t *testing.T) {
	c, proxy := proxied(t)
	s := newStore(t, c)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	reading := counting("read_cut", func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
		if e.GlobalPosition == 3 {
			proxy.CutAll()
			return tx.Reader().Get(ctx, tx.Key("anything")).Err()
		}
		return nil
	})
	err := s.Apply(ctx, reading, events)
	var ae *projection.ApplyError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Apply with a read across a lost connection = %v, want a store error that is not an *ApplyError", err)
	}
	assertModel(t, s, "read_cut", nil)
}

// TestRefusedCommands: a command Redis refuses when queued aborts the
// batch with nothing applied; one it refuses at run time cannot be rolled
// back, and says so.
func TestRefusedCommands(t *testing.T) {
	c := redistest.Client(t)
	s := newStore(t, c)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 8)

	queued := counting("queued", func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
		if e.GlobalPosition == 4 {
			tx.Pipe().Do(ctx, "SET", tx.Key("x")) // wrong number of arguments
		}
		return nil
	})
	err := s.Apply(ctx, queued, events)
	var ae *projection.ApplyError
	if !errors.As(err, &ae) || ae.Index != 3 || errors.Is(err, redis.ErrPartiallyApplied) {
		t.Fatalf("Apply with a command refused when queued = %v, want an *ApplyError at index 3", err)
	}
	assertModel(t, s, "queued", nil)

	runtime := counting("runtime", func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
		if e.GlobalPosition == 6 {
			tx.Pipe().LPush(ctx, tx.Key("counts"), "not a hash") // WRONGTYPE at run time
		}
		return nil
	})
	err = s.Apply(ctx, runtime, events)
	if !errors.As(err, &ae) || ae.Index != 5 || !errors.Is(err, redis.ErrPartiallyApplied) {
		t.Fatalf("Apply with a command refused at run time = %v, want an *ApplyError at index 5 matching ErrPartiallyApplied", err)
	}
	assertModel(t, s, "runtime", events) // Redis applied the rest
	// The store recorded the event: DeadLetter would ignore it now.
	dl, err := s.DeadLetters(ctx, "runtime")
	if err != nil || len(dl) != 1 || dl[0].Event.GlobalPosition != 6 || !strings.Contains(dl[0].Error, "WRONGTYPE") {
		t.Fatalf("dead letters %+v (%v), want event 6", dl, err)
	}

	// A runner goes on past it, whatever the policy but Stop.
	feed := evmemory.New()
	for _, e := range events {
		if _, err := feed.Append(ctx, e.StreamID, persistence.Any, e.EventData); err != nil {
			t.Fatal(err)
		}
	}
	p := counting("partial", func(ctx context.Context, tx *redis.Tx, e persistence.RecordedEvent) error {
		if e.GlobalPosition == 4 {
			tx.Pipe().LPush(ctx, tx.Key("counts"), "not a hash")
		}
		return nil
	})
	r, err := projection.NewRunner(feed, s, p, projection.Options{Lease: evmemory.NewLeases(), Logger: testkit.QuietLogger(), PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	err = r.WaitFor(ctx, int64(len(events)))
	stop()
	if rerr := <-done; err != nil || rerr != nil {
		t.Fatalf("WaitFor: %v; Run: %v", err, rerr)
	}
	if dl, err := s.DeadLetters(ctx, "partial"); err != nil || len(dl) != 1 || dl[0].Event.GlobalPosition != 4 {
		t.Fatalf("dead letters %+v (%v), want event 4", dl, err)
	}
}

func TestReadIsReadOnly(t *testing.T) {
	c := redistest.Client(t)
	s := newStore(t, c)
	ctx := ctxFor(t)
	if err := s.Apply(ctx, counting("ro", nil), projectiontest.Events(t, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Read(ctx, "ro", "SET", "counts", "overwritten").Err(); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Read of a write = %v, want ErrInvalid", err)
	}
	// A command with more keys than one would read outside the model:
	// another application's key, here.
	if err := c.Set(ctx, "session:admin", "secret", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(context.Background(), "session:admin") })
	for _, cmd := range []string{"MGET", "mget", "SUNION", "EVAL", "EXISTS"} {
		if v, err := s.Read(ctx, "ro", cmd, "counts", "session:admin").Result(); !errors.Is(err, projection.ErrInvalid) {
			t.Fatalf("Read %s = %v, %v; want ErrInvalid", cmd, v, err)
		}
	}
	if n, err := s.Read(ctx, "ro", "hlen", "counts").Int(); err != nil || n != 3 {
		t.Fatalf("Read hlen = %d, %v", n, err)
	}
	if err := s.Read(ctx, "none", "GET", "x").Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("Read of a model that does not exist = %v, want redis.Nil", err)
	}
	prefix, err := s.Prefix(ctx, "ro")
	if err != nil || prefix == "" {
		t.Fatalf("Prefix = %q, %v", prefix, err)
	}
	if n, err := c.HLen(ctx, prefix+"counts").Result(); err != nil || n != 3 {
		t.Fatalf("HLEN under Prefix = %d, %v", n, err)
	}
}

func TestDrop(t *testing.T) {
	c := redistest.Client(t)
	s := newStore(t, c)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 6)
	if err := s.Apply(ctx, counting("dropped", nil), events[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "dropped", events[3], errors.New("bad")); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	if dl, err := s.DeadLetters(ctx, "dropped"); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %v (%v) after Drop", dl, err)
	}
	assertModel(t, s, "dropped", nil)
	if err := s.Apply(ctx, counting("dropped", nil), events); err != nil {
		t.Fatal(err)
	}
	assertModel(t, s, "dropped", events)
}

func TestInvalidInput(t *testing.T) {
	c := redistest.Client(t)
	for _, prefix := range []string{"", "a{b}"} {
		if _, err := redis.New(c, redis.WithPrefix(prefix)); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("New(prefix %q) = %v, want ErrInvalid", prefix, err)
		}
	}
	s := newStore(t, c)
	ctx := ctxFor(t)
	events := projectiontest.Events(t, 2)
	for _, name := range []string{"", "Upper", "a__b", "x}{y"} {
		if err := s.Apply(ctx, counting(name, nil), events); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("Apply(%q) = %v, want ErrInvalid", name, err)
		}
		if err := s.DeadLetter(ctx, name, events[0], errors.New("x")); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("DeadLetter(%q) = %v, want ErrInvalid", name, err)
		}
		if err := s.Read(ctx, name, "GET", "k").Err(); !errors.Is(err, projection.ErrInvalid) {
			t.Errorf("Read(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if err := s.FinishRebuild(ctx, "never", projection.RebuildName("never")); !errors.Is(err, projection.ErrInvalid) {
		t.Errorf("FinishRebuild without a rebuild = %v, want ErrInvalid", err)
	}
}

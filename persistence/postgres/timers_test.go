package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/testkit/pgtest"
)

// TestTimersPageByKeyset: a page of timers after a cursor is read from the
// index at the cursor, whatever the number of timers before it.
func TestTimersPageByKeyset(t *testing.T) {
	pool := pgtest.Pool(t)
	schema := pgtest.Schema(t, pool, "timer_pages")
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	due := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var changes []persistence.TimerChange
	for i := range 5000 {
		changes = append(changes, persistence.TimerChange{Timer: persistence.Timer{
			Owner: "saga-x", ID: fmt.Sprintf("%05d", i), Name: "t", Due: due.Add(time.Duration(i%7) * time.Second), FireID: fmt.Sprint("f", i)}})
	}
	if _, err := s.AppendWithTimers(ctx, "s", persistence.NoStream, []persistence.EventData{ev("e1")}, changes); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "timers"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	all, err := s.Timers(ctx, "saga-x", persistence.Timer{}, 5000)
	if err != nil || len(all) != 5000 {
		t.Fatalf("Timers: %d, %v", len(all), err)
	}
	after := all[3999]
	page, err := s.Timers(ctx, "saga-x", after, 10)
	if err != nil || len(page) != 10 || page[0] != all[4000] {
		t.Fatalf("page after the 4000th: %v, %v; want from %v", page, err, all[4000])
	}
	var plan []struct {
		Plan map[string]any `json:"Plan"`
	}
	var raw []byte
	if err := pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+s.q.timersAfter,
		"saga-x", after.Due.UnixNano(), after.ID, after.Name, 10).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	if read := rowsRead(plan[0].Plan); read > 10 {
		t.Fatalf("a page of 10 after 4000 timers read %d rows: %s", read, raw)
	}
}

// TestTimerChangesProbeByKeyAfterGrowth: the writer's statement that
// applies timer changes finds the rows by key, also once the table has
// grown far past its size when the statement was first planned — a plan
// cached then would scan the whole table in every transaction with a timer
// change. The plans come from auto_explain, sent to the client as notices.
func TestTimerChangesProbeByKeyAfterGrowth(t *testing.T) {
	var mu sync.Mutex
	var plans []string
	pool := pgtest.PoolConfig(t, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			if strings.Contains(n.Message, "WITH gone") {
				mu.Lock()
				plans = append(plans, n.Message)
				mu.Unlock()
			}
		}
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice")
			return err
		}
	})
	schema := pgtest.Schema(t, pool, "timer_plans")
	s := newStore(t, pool, schema)
	ctx := ctxFor(t)
	due := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	arm := func(id string) persistence.TimerChange {
		return persistence.TimerChange{Timer: persistence.Timer{Owner: "o", ID: id, Name: "t", Due: due, FireID: "f" + id}}
	}
	// Planned, and cached if it would be, while the table is small.
	for i := range 12 {
		if _, err := s.AppendWithTimers(ctx, fmt.Sprint("small-", i), persistence.NoStream, []persistence.EventData{ev(fmt.Sprint("s", i))},
			[]persistence.TimerChange{arm(fmt.Sprint("s", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var changes []persistence.TimerChange
	for i := range 5000 {
		changes = append(changes, arm(fmt.Sprint(i)))
	}
	if _, err := s.AppendWithTimers(ctx, "big", persistence.NoStream, []persistence.EventData{ev("big")}, changes); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	plans = nil
	mu.Unlock()
	for i := range 8 { // cancels, as firings make them
		var cancels []persistence.TimerChange
		for j := range 100 {
			c := arm(fmt.Sprint(i*100 + j))
			cancels = append(cancels, persistence.TimerChange{Timer: c.Timer, Cancel: true})
		}
		if _, err := s.AppendWithTimers(ctx, "big", persistence.ExpectedVersion(i+1), []persistence.EventData{ev(fmt.Sprint("c", i))}, cancels); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(plans) < 8 {
		t.Fatalf("%d plans of the timer statement seen, want 8 (is auto_explain installed?)", len(plans))
	}
	for _, p := range plans {
		if strings.Contains(p, "Seq Scan on timers") || strings.Contains(p, "Hash Join") {
			t.Fatalf("the timer statement scans the table:\n%s", p)
		}
	}
}

// TestEventCheckRefusesAtAppend: a check given with WithEventCheck refuses
// an append, on every append path, with an error matching
// ErrInvalidInput — nothing written, the batch-mates unharmed.
func TestEventCheckRefusesAtAppend(t *testing.T) {
	pool := pgtest.Pool(t)
	check := func(stream string, e persistence.EventData) error {
		if e.Type == "refused" {
			return fmt.Errorf("stream %s: no %s here", stream, e.Type)
		}
		return nil
	}
	s := newStore(t, pool, pgtest.Schema(t, pool, "event_check"), WithEventCheck(check))
	ctx := ctxFor(t)
	bad := persistence.EventData{ID: "b1", Type: "refused", Data: []byte("{}")}
	if _, err := s.Append(ctx, "s", persistence.NoStream, ev("ok1"), bad); !errors.Is(err, persistence.ErrInvalidInput) || !strings.Contains(err.Error(), "no refused here") {
		t.Fatalf("Append = %v, want the check's refusal matching ErrInvalidInput", err)
	}
	if err := s.AppendAsync(ctx, "s", persistence.NoStream, []persistence.EventData{bad}, func(persistence.AppendResult, error) {
		t.Error("a refused async append was queued")
	}); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("AppendAsync = %v", err)
	}
	if _, err := s.Load(ctx, "s", 1); !errors.Is(err, persistence.ErrStreamNotFound) {
		t.Fatalf("a refused append wrote: %v", err)
	}
	if _, err := s.Append(ctx, "s", persistence.NoStream, ev("ok1")); err != nil {
		t.Fatal(err)
	}
}

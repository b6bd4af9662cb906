package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/composable-go/composable/persistence"
)

// The durable timer cases: timers are written atomically with the events
// of an append, replaced by name, listed earliest first per owner, and
// deleted only by the firing they belong to.

var timerBase = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

func arm(owner, id, name string, due time.Time, fireID string) persistence.TimerChange {
	return persistence.TimerChange{Timer: persistence.Timer{Owner: owner, ID: id, Name: name, Due: due, FireID: fireID}}
}

func disarm(owner, id, name string) persistence.TimerChange {
	return persistence.TimerChange{Timer: persistence.Timer{Owner: owner, ID: id, Name: name}, Cancel: true}
}

func timers(t *testing.T, s Store, owner string) []persistence.Timer {
	t.Helper()
	got, err := s.Timers(ctxFor(t), owner, persistence.Timer{}, 1000)
	if err != nil {
		t.Fatalf("Timers(%q): %v", owner, err)
	}
	return got
}

// timerList renders timers for comparison: name@offset-from-base/fire id.
func timerList(ts []persistence.Timer) string {
	out := ""
	for _, t := range ts {
		out += fmt.Sprintf("[%s/%s %s@%v %s]", t.Owner, t.ID, t.Name, t.Due.Sub(timerBase), t.FireID)
	}
	return out
}

func testTimersRoundTrip(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, err := s.AppendWithTimers(ctx, "saga-x/1", persistence.NoStream, evs("t1", 1), []persistence.TimerChange{
		arm("saga-x", "1", "late", timerBase.Add(time.Hour), "f-late"),
		arm("saga-x", "1", "soon", timerBase, "f-soon"),
		arm("saga-y", "1", "other", timerBase, "f-other"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := timers(t, s, "saga-x")
	if want := "[saga-x/1 soon@0s f-soon][saga-x/1 late@1h0m0s f-late]"; timerList(got) != want {
		t.Fatalf("timers %s, want %s", timerList(got), want)
	}
	if got[0].Due != timerBase {
		t.Fatalf("due %#v, want %#v exactly, in UTC", got[0].Due, timerBase)
	}
	if first, err := s.Timers(ctx, "saga-x", persistence.Timer{}, 1); err != nil || timerList(first) != "[saga-x/1 soon@0s f-soon]" {
		t.Fatalf("limit 1: %s, %v", timerList(first), err)
	}
	if _, err := s.Timers(ctx, "saga-x", persistence.Timer{}, 0); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("limit 0: %v, want ErrInvalidInput", err)
	}
	// Re-arming a pending name replaces it; cancelling removes it.
	_, err = s.AppendWithTimers(ctx, "saga-x/1", 1, evs("t2", 1), []persistence.TimerChange{
		arm("saga-x", "1", "soon", timerBase.Add(2*time.Hour), "f-soon-2"),
		disarm("saga-x", "1", "late"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := timerList(timers(t, s, "saga-x")), "[saga-x/1 soon@2h0m0s f-soon-2]"; got != want {
		t.Fatalf("after re-arm and cancel: %s, want %s", got, want)
	}
	if got := timers(t, s, "saga-z"); len(got) != 0 {
		t.Fatalf("an owner without timers has %s", timerList(got))
	}
}

func testTimerChangesApplyInOrder(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, err := s.AppendWithTimers(ctx, "saga-x/1", persistence.NoStream, evs("o", 1), []persistence.TimerChange{
		arm("saga-x", "1", "armed-then-cancelled", timerBase, "f1"),
		disarm("saga-x", "1", "armed-then-cancelled"),
		disarm("saga-x", "1", "cancelled-then-armed"),
		arm("saga-x", "1", "cancelled-then-armed", timerBase, "f2"),
		arm("saga-x", "1", "armed-twice", timerBase, "f3"),
		arm("saga-x", "1", "armed-twice", timerBase.Add(time.Minute), "f4"),
		disarm("saga-x", "1", "never-armed"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := timerList(timers(t, s, "saga-x")), "[saga-x/1 cancelled-then-armed@0s f2][saga-x/1 armed-twice@1m0s f4]"; got != want {
		t.Fatalf("timers %s, want %s", got, want)
	}
}

func testTimersAreAtomicWithEvents(t *testing.T, s Store) {
	ctx := ctxFor(t)
	mustAppend(t, s, "saga-x/1", persistence.NoStream, ev("first"))
	change := []persistence.TimerChange{arm("saga-x", "1", "t", timerBase, "f")}
	if _, err := s.AppendWithTimers(ctx, "saga-x/1", persistence.NoStream, evs("conflict", 1), change); !errors.Is(err, persistence.ErrConcurrency) {
		t.Fatalf("conflicting append: %v", err)
	}
	if _, err := s.AppendWithTimers(ctx, "saga-x/1", 1, []persistence.EventData{ev("first")}, change); !errors.Is(err, persistence.ErrDuplicateEvent) {
		t.Fatalf("duplicate event: %v", err)
	}
	bad := []persistence.TimerChange{arm("saga-x", "1", "", timerBase, "f")}
	if _, err := s.AppendWithTimers(ctx, "saga-x/1", 1, evs("bad", 1), bad); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("timer without a name: %v", err)
	}
	for name, c := range map[string]persistence.TimerChange{
		"no fire id": arm("saga-x", "1", "t", timerBase, ""),
		"no owner":   arm("", "1", "t", timerBase, "f"),
		"nul byte":   arm("saga-x", "1", "t\x00", timerBase, "f"),
		"zero due":   arm("saga-x", "1", "t", time.Time{}, "f"),
		"year 2300":  arm("saga-x", "1", "t", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "f"),
	} {
		if _, err := s.AppendWithTimers(ctx, "saga-x/1", 1, evs("bad", 1), []persistence.TimerChange{c}); !errors.Is(err, persistence.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
	if got := timers(t, s, "saga-x"); len(got) != 0 {
		t.Fatalf("refused appends left timers %s", timerList(got))
	}
	if got := load(t, s, "saga-x/1"); len(got) != 1 {
		t.Fatalf("refused appends left %d events, want 1", len(got))
	}
}

func testDeleteTimerMatchesTheFiring(t *testing.T, s Store) {
	ctx := ctxFor(t)
	_, err := s.AppendWithTimers(ctx, "saga-x/1", persistence.NoStream, evs("d", 1), []persistence.TimerChange{
		arm("saga-x", "1", "a", timerBase, "fire-2"),
		arm("saga-x", "1", "b", timerBase, "fire-b"),
	})
	if err != nil {
		t.Fatal(err)
	}
	stale := persistence.Timer{Owner: "saga-x", ID: "1", Name: "a", FireID: "fire-1"}
	if err := s.DeleteTimer(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if got := timers(t, s, "saga-x"); len(got) != 2 {
		t.Fatalf("a stale firing deleted a re-armed timer: %s", timerList(got))
	}
	current := stale
	current.FireID = "fire-2"
	for range 2 { // the second time it is gone: not an error
		if err := s.DeleteTimer(ctx, current); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := timerList(timers(t, s, "saga-x")), "[saga-x/1 b@0s fire-b]"; got != want {
		t.Fatalf("timers %s, want %s", got, want)
	}
}

// testTimersOfRacingWriters: concurrent appends, each arming a timer —
// batched together by stores that group commits — keep the timers of the
// appends that won, and only those.
func testTimersOfRacingWriters(t *testing.T, s Store) {
	ctx := ctxFor(t)
	const streams, racers = 20, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]bool{}
	for i := range streams {
		for r := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprint(i)
				name := fmt.Sprint("racer-", r)
				_, err := s.AppendWithTimers(ctx, "saga-x/"+id, persistence.NoStream, evs(fmt.Sprintf("race-%d-%d", i, r), 1),
					[]persistence.TimerChange{arm("saga-x", id, name, timerBase.Add(time.Duration(i)*time.Second), "f-"+id+"-"+name)})
				switch {
				case err == nil:
					mu.Lock()
					won[id+"/"+name] = true
					mu.Unlock()
				case !errors.Is(err, persistence.ErrConcurrency):
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	got := timers(t, s, "saga-x")
	if len(got) != streams || len(won) != streams {
		t.Fatalf("%d timers and %d winners for %d streams: %s", len(got), len(won), streams, timerList(got))
	}
	for i, tm := range got {
		if !won[tm.ID+"/"+tm.Name] {
			t.Fatalf("timer %s/%s of an append that lost", tm.ID, tm.Name)
		}
		if i > 0 && tm.Due.Before(got[i-1].Due) {
			t.Fatalf("not earliest first: %s", timerList(got))
		}
	}
}

// testConditionalCancels: a cancel with a fire id removes only that
// arming, also when arms and cancels of one timer share an append.
func testConditionalCancels(t *testing.T, s Store) {
	ctx := ctxFor(t)
	cond := func(name, fireID string) persistence.TimerChange {
		c := disarm("saga-x", "1", name)
		c.Timer.FireID = fireID
		return c
	}
	names := []string{"own", "stale", "rearmed", "cancel-then-rearm", "arm-then-own", "never"}
	var armAll []persistence.TimerChange
	for _, n := range names[:5] {
		armAll = append(armAll, arm("saga-x", "1", n, timerBase, "f1-"+n))
	}
	if _, err := s.AppendWithTimers(ctx, "saga-x/1", persistence.NoStream, evs("c1", 1), armAll); err != nil {
		t.Fatal(err)
	}
	_, err := s.AppendWithTimers(ctx, "saga-x/1", 1, evs("c2", 1), []persistence.TimerChange{
		cond("own", "f1-own"),     // its own firing: gone
		cond("stale", "f0-stale"), // another arming's: stays
		arm("saga-x", "1", "rearmed", timerBase.Add(time.Minute), "f2-rearmed"), cond("rearmed", "f1-rearmed"), // re-armed first: stays
		cond("cancel-then-rearm", "f1-cancel-then-rearm"), arm("saga-x", "1", "cancel-then-rearm", timerBase.Add(time.Minute), "f2-cancel-then-rearm"),
		arm("saga-x", "1", "arm-then-own", timerBase.Add(time.Minute), "f2-arm-then-own"), cond("arm-then-own", "f2-arm-then-own"), // gone
		cond("never", "f-never"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[saga-x/1 stale@0s f1-stale][saga-x/1 cancel-then-rearm@1m0s f2-cancel-then-rearm][saga-x/1 rearmed@1m0s f2-rearmed]"
	got := timers(t, s, "saga-x")
	slices.SortFunc(got, func(a, b persistence.Timer) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if timerList(got) != want {
		t.Fatalf("timers %s, want %s", timerList(got), want)
	}
	if err := s.DeleteTimer(ctx, persistence.Timer{Owner: "saga-x", ID: "1", Name: "stale"}); err != nil {
		t.Fatal(err)
	}
	if got := timers(t, s, "saga-x"); len(got) != 3 {
		t.Fatalf("DeleteTimer without a fire id deleted something: %s", timerList(got))
	}
}

// testMarks: timers due Never are listed by owner and name, in id order,
// page by page; ordinary timers of that name, other names and other owners
// are not; a cancelled mark is gone.
func testMarks(t *testing.T, s Store) {
	ctx := ctxFor(t)
	var changes []persistence.TimerChange
	for _, id := range []string{"c", "a", "e", "b", "d", "B", "é"} {
		changes = append(changes, arm("saga-x", id, "parked", persistence.Never, "m-"+id))
	}
	changes = append(changes,
		arm("saga-x", "f", "parked", timerBase, "not-a-mark"),    // due some day: a timer
		arm("saga-x", "g", "other", persistence.Never, "m-g"),    // another name
		arm("saga-y", "a", "parked", persistence.Never, "m-y-a"), // another owner
		arm("saga-x", "z", "parked", persistence.Never, "m-z"),
		disarm("saga-x", "z", "parked"),
	)
	if _, err := s.AppendWithTimers(ctx, "saga-x/marks", persistence.NoStream, evs("m", 1), changes); err != nil {
		t.Fatal(err)
	}
	var ids []string
	after := ""
	for page := 0; ; page++ {
		got, err := s.Marks(ctx, "saga-x", "parked", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		if page > 5 || len(got) > 2 {
			t.Fatalf("page %d: %s", page, timerList(got))
		}
		for _, m := range got {
			if !m.Due.Equal(persistence.Never) || m.FireID != "m-"+m.ID || m.Owner != "saga-x" || m.Name != "parked" {
				t.Fatalf("mark %+v", m)
			}
			ids = append(ids, m.ID)
		}
		after = got[len(got)-1].ID
	}
	if want := []string{"B", "a", "b", "c", "d", "e", "é"}; !slices.Equal(ids, want) { // byte order
		t.Fatalf("marks %v, want %v", ids, want)
	}
	if _, err := s.Marks(ctx, "saga-x", "parked", "", 0); !errors.Is(err, persistence.ErrBadLimit) {
		t.Fatalf("Marks with limit 0: %v, want ErrBadLimit", err)
	}
	if _, err := s.Marks(ctx, "saga-x", "parked", "a\x00", 10); !errors.Is(err, persistence.ErrInvalidText) {
		t.Fatalf("Marks after an invalid id: %v, want ErrInvalidText", err)
	}
	// Due times are kept exactly: Never comes back as Never, also from
	// the scheduler's read (which lists marks last).
	all := timers(t, s, "saga-x")
	if last := all[len(all)-1]; !last.Due.Equal(persistence.Never) {
		t.Fatalf("Timers lists %s last, want a mark", timerList([]persistence.Timer{last}))
	}
}

// testTimersPageInTimerOrder: timers come in timer order — due time, then
// id and name in byte order — and paging on after the last one read
// returns every timer once; timers armed behind the last one read wait for
// the next pass from the start. A cursor that is not text is refused.
func testTimersPageInTimerOrder(t *testing.T, s Store) {
	ctx := ctxFor(t)
	var changes []persistence.TimerChange
	var want []persistence.Timer
	for i, id := range []string{"b", "a", "B", "é", "ab", "a\u0080"} {
		for j, name := range []string{"y", "x", "X"} {
			due := timerBase.Add(time.Duration((i*3+j)%4) * time.Second) // ties in due time
			c := arm("owner-p", id, name, due, fmt.Sprint("f-", i, "-", j))
			changes = append(changes, c)
			want = append(want, c.Timer)
		}
	}
	changes = append(changes, arm("owner-p", "m", "parked", persistence.Never, "f-mark"))
	want = append(want, changes[len(changes)-1].Timer)
	if _, err := s.AppendWithTimers(ctx, "owner-p/1", persistence.NoStream, evs("p", 1), changes); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(a, b persistence.Timer) int {
		if a.Before(b) {
			return -1
		}
		return 1
	})
	var got []persistence.Timer
	var after persistence.Timer
	for page := 0; ; page++ {
		ts, err := s.Timers(ctx, "owner-p", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if page == 1 {
			// Armed behind the cursor, and armed ahead of it: the first
			// is seen by the next pass, the second in this one.
			late := arm("owner-p", "0", "late", timerBase.Add(time.Hour), "f-late")
			if _, err := s.AppendWithTimers(ctx, "owner-p/1", 1, evs("q", 1), []persistence.TimerChange{
				arm("owner-p", "0", "early", timerBase.Add(-time.Hour), "f-early"), late,
			}); err != nil {
				t.Fatal(err)
			}
			want = slices.Insert(want, len(want)-1, late.Timer) // before the mark
		}
		got = append(got, ts...)
		if len(ts) < 4 {
			break
		}
		if page > len(want) {
			t.Fatalf("paging does not end: %s", timerList(got))
		}
		after = ts[len(ts)-1]
	}
	if timerList(got) != timerList(want) {
		t.Fatalf("paged\n %s\nwant\n %s", timerList(got), timerList(want))
	}
	if first, err := s.Timers(ctx, "owner-p", persistence.Timer{}, 1); err != nil || len(first) != 1 || first[0].Name != "early" {
		t.Fatalf("a new pass starts with %s (%v), want the timer armed behind the cursor", timerList(first), err)
	}
	if rest, err := s.Timers(ctx, "owner-p", want[len(want)-1], 10); err != nil || len(rest) != 0 {
		t.Fatalf("after the last timer: %s, %v", timerList(rest), err)
	}
	bad := persistence.Timer{Owner: "owner-p", ID: "a\x00", Name: "x", Due: timerBase}
	if _, err := s.Timers(ctx, "owner-p", bad, 10); !errors.Is(err, persistence.ErrInvalidText) {
		t.Fatalf("Timers after an invalid id: %v, want ErrInvalidText", err)
	}
	bad = persistence.Timer{Owner: "owner-p", ID: "a", Name: "x", Due: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := s.Timers(ctx, "owner-p", bad, 10); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("Timers after a due time no store keeps: %v, want ErrInvalidInput", err)
	}
}

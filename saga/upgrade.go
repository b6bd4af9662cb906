package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/composable-go/composable"
	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// Upgrading instances started before timers and pending commands were
// timer rows. Such a saga kept an index stream, saga-index/<type>, with an
// entry when an instance started and one when it ended; its instances'
// timers and pending commands live only in their events. Upgrade reads
// the index once and sends each instance it lists as not ended an upgrade
// input, which the instance handles like any input — serially, in its own
// transaction:
//
//   - an instance that ended or never started records nothing;
//   - a running or compensating one arms each of its timers again, due
//     when it was due (a timer overdue fires at once), and guards each
//     pending command anew, dispatching it again unless this process is
//     dispatching it already (activation dispatches pending commands; the
//     command id makes a second dispatch idempotent);
//   - a parked one (parked since the upgrade, before Upgrade ran) arms its
//     timers again, whose firings it defers as it does every input; its
//     pending commands wait for Resume, which guards and dispatches them.
//
// The upgrade carries no command id: deduplication by command id holds
// only within the aggregate's window, and re-arming what is pending is
// idempotent in effect — a timer re-armed with its due time stays one
// timer, a command dispatched again is deduplicated by its own id — so a
// second Upgrade only records the same again.

// indexEntry is an entry of the former index stream.
type indexEntry struct {
	ID    string `json:"id"`
	Ended bool   `json:"ended,omitempty"`
}

// Upgrade gives the instances of this saga started by a version without
// timer rows — those its former index stream, saga-index/<type>, lists as
// not ended — their timer rows and command guards, so that their timers
// fire and their pending commands are dispatched again after a crash
// without waiting for something to activate them. It returns how many
// instances it upgraded. An instance it cannot upgrade (its stream cannot
// be read, or the store refuses what it would write) is passed over: the
// error, returned at the end, names the first few and counts them. It
// reads the whole index stream and upgrades one instance at a time: run
// it once after upgrading, in one process; running it again records the
// same again and changes nothing. The index stream is left in place.
func (s *Saga[S, E, Env]) Upgrade(ctx context.Context) (int, error) {
	events, err := s.store.Load(ctx, "saga-index/"+s.def.Type, 1)
	if errors.Is(err, persistence.ErrStreamNotFound) {
		return 0, nil // no earlier version ran this saga here
	}
	if err != nil {
		return 0, fmt.Errorf("saga %s: read the former index: %w", s.def.Type, err)
	}
	ended := map[string]bool{}
	var ids []string
	for _, e := range events {
		var entry indexEntry
		if err := json.Unmarshal(e.Data, &entry); err != nil || entry.ID == "" {
			return 0, fmt.Errorf("saga %s: former index entry %s: %w", s.def.Type, persistence.Quote(e.ID), errors.Join(persistence.ErrCorrupt, err))
		}
		if _, seen := ended[entry.ID]; !seen {
			ids = append(ids, entry.ID)
		}
		ended[entry.ID] = ended[entry.ID] || entry.Ended
	}
	n, failed := 0, 0
	var errs []error
	for _, id := range ids {
		if ended[id] {
			continue
		}
		if _, err := s.typ.Send(ctx, id, input{Upgrade: true}); err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if failed++; len(errs) < 10 {
				errs = append(errs, fmt.Errorf("upgrade %s: %w", persistence.Quote(id), err))
			}
			continue
		}
		n++
	}
	if failed > 0 {
		return n, fmt.Errorf("saga %s: %d instances not upgraded: %w", s.def.Type, failed, errors.Join(errs...))
	}
	return n, nil
}

// upgrade arms an instance's timers and guards its pending commands again
// (see Upgrade).
func (s *Saga[S, E, Env]) upgrade(inst Instance[S]) decision {
	if inst.Status != Running && inst.Status != Compensating && inst.Status != Parked {
		return decision{}
	}
	var out decision
	for _, name := range slices.Sorted(maps.Keys(inst.Timers)) {
		due := inst.Timers[name]
		out.Events = append(out.Events, evTimerScheduled{Name: name, Due: due})
		out.Timers = append(out.Timers, aggregate.Timer{Name: userTimer + name, Due: due})
	}
	if inst.Status == Parked {
		return out // Resume guards and dispatches the pending commands
	}
	var fx []composable.Effect[input]
	for _, step := range slices.Sorted(maps.Keys(inst.Pending)) {
		ev := evResumed{Step: step, Guard: s.guardDue()}
		out.Events = append(out.Events, ev)
		out.Timers = append(out.Timers, aggregate.Timer{Name: guardTimer + step, Due: ev.Guard})
		if !s.dispatching(inst.ID, step) {
			fx = append(fx, s.dispatchEffect(inst.ID, inst.Pending[step]))
		}
	}
	out.Effect = composable.Merge(fx...)
	return out
}

package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

// Tx is what a projection's Setup and Handle write through: the batch's
// transaction. Writes go to [Tx.Pipe] and take effect together with the
// checkpoint when the batch ends; keys are named through [Tx.Key].
//
// Reads through [Tx.Reader] see the model as it was before the batch — not
// the batch's own writes, which Redis has not run yet. Handlers that need
// to build on earlier events of the batch use commands that do the
// arithmetic server-side (HINCRBY, LPUSH with LTRIM, ZADD, ...).
type Tx struct {
	conn   *redis.Tx
	pipe   redis.Pipeliner
	prefix string
	dead   string // the dead letters' key
	owners []int  // the event index that queued each command; -1 for Setup
}

// Key returns the key of the model being written for key.
func (t *Tx) Key(key string) string { return t.prefix + key }

// Pipe returns the batch's transaction, to queue writes on.
func (t *Tx) Pipe() redis.Pipeliner { return t.pipe }

// Reader returns a connection for reads of the model as it was before the
// batch.
func (t *Tx) Reader() redis.Cmdable { return t.conn }

// track records index as the owner of the commands queued since the last
// call.
func (t *Tx) track(index int) {
	for len(t.owners) < t.pipe.Len() {
		t.owners = append(t.owners, index)
	}
}

// Apply implements [projection.Store].
func (s *Store) Apply(ctx context.Context, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := projection.ValidateBatch(events); err != nil {
		return err
	}
	k := s.keysOf(p.Name)
	err := s.watch(ctx, func(conn *redis.Tx) error { return s.apply(ctx, conn, k, p, events) }, k.checkpoint)
	var ae *projection.ApplyError
	if err != nil && !errors.As(err, &ae) {
		return fmt.Errorf("projection/redis: apply to %s: %w", p.Name, err)
	}
	return err
}

// apply runs one attempt of a batch on conn, which watches the checkpoint.
func (s *Store) apply(ctx context.Context, conn *redis.Tx, k keys, p projection.Projection[*Tx], events []persistence.RecordedEvent) error {
	st, err := readState(ctx, conn, k.checkpoint)
	if err != nil {
		return err
	}
	t, err := begin(ctx, conn, k, &st, p)
	if err != nil {
		return err
	}
	last := st.pos
	for i, e := range events {
		if e.GlobalPosition <= st.pos {
			continue
		}
		if err := p.Handle(ctx, t, e); err != nil {
			if unavailable(err) {
				return err
			}
			return &projection.ApplyError{Index: i, Event: e, Err: err}
		}
		t.track(i)
		last = e.GlobalPosition
	}
	if last == st.pos && st.ready {
		return nil // nothing new
	}
	t.pipe.HSet(ctx, k.checkpoint, "pos", last, "gen", st.gen, "ready", 1)
	return t.exec(ctx, events)
}

// begin returns the transaction of a batch on conn: in a new generation
// (st.gen 0: numbers an aborted attempt took are skipped, never reused),
// and after Setup if the generation is not ready. It sets st.gen.
func begin(ctx context.Context, conn *redis.Tx, k keys, st *state, p projection.Projection[*Tx]) (*Tx, error) {
	if st.gen == 0 {
		var err error
		if st.gen, err = conn.Incr(ctx, k.gens()).Result(); err != nil {
			return nil, err
		}
	}
	t := &Tx{conn: conn, pipe: conn.TxPipeline(), prefix: k.generation(st.gen), dead: k.dead}
	if !st.ready && p.Setup != nil {
		if err := p.Setup(ctx, t); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		t.track(-1)
	}
	return t, nil
}

// exec sends the transaction, unless ctx ended mid-batch, and explains a
// command's failure in terms of events.
func (t *Tx) exec(ctx context.Context, events []persistence.RecordedEvent) error {
	if err := ctx.Err(); err != nil {
		return err // stopped mid-batch: nothing sent
	}
	cmds, err := t.pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.TxFailedErr) || unavailable(err) {
		return err
	}
	err = commandError(t, cmds, events, err)
	var ae *projection.ApplyError
	if errors.As(err, &ae) && errors.Is(err, ErrPartiallyApplied) {
		// The checkpoint moved past the event with the rest of the batch:
		// record it as a dead letter here, whatever the policy, or no one
		// will (DeadLetter ignores events at or before the checkpoint).
		if derr := recordDeadLetter(ctx, t.conn, t.dead, ae); derr != nil {
			return fmt.Errorf("projection/redis: %w; and recording it as a dead letter failed: %w", err, derr)
		}
	}
	return err
}

// recordDeadLetter adds the event of ae to the dead letters under dead,
// retrying for a while — even if ctx ends: once EXEC has run, this is the
// only record of the event.
func recordDeadLetter(ctx context.Context, c redis.Cmdable, dead string, ae *projection.ApplyError) error {
	member, err := json.Marshal(projection.DeadLetter{Event: ae.Event, Error: ae.Err.Error(), At: time.Now().UTC()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		// The member is fixed: a retry that follows a lost reply adds nothing.
		err = c.ZAdd(ctx, dead, redis.Z{Score: float64(ae.Event.GlobalPosition), Member: member}).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// commandError explains a transaction a command of failed in: refused when
// queued (EXECABORT: nothing applied), or at run time (the rest applied).
func commandError(t *Tx, cmds []redis.Cmder, events []persistence.RecordedEvent, err error) error {
	failed := -1
	for i, c := range cmds {
		// Under EXECABORT every command carries that error; the one Redis
		// refused carries its own.
		if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) && !redis.IsExecAbortError(c.Err()) {
			failed = i
			break
		}
	}
	if failed < 0 || failed >= len(t.owners) {
		return err // the checkpoint's own command: not the handler's doing
	}
	cause := cmds[failed].Err()
	owner := t.owners[failed]
	if redis.IsExecAbortError(err) {
		if unavailable(cause) {
			return err // OOM, READONLY, MASTERDOWN...: the server's state, not the handler's doing
		}
		if owner < 0 {
			return fmt.Errorf("setup: %w", cause)
		}
		return &projection.ApplyError{Index: owner, Event: events[owner], Err: cause}
	}
	// Run time: the rest of the transaction took effect, whatever the cause.
	cause = fmt.Errorf("%w: %w", ErrPartiallyApplied, cause)
	if owner < 0 {
		// Setup's: blame the batch's first event, so that it is recorded.
		cause = fmt.Errorf("setup: %w", cause)
		owner = slices.IndexFunc(t.owners, func(o int) bool { return o >= 0 })
		if owner < 0 {
			return cause
		}
		owner = t.owners[owner]
	}
	return &projection.ApplyError{Index: owner, Event: events[owner], Err: cause}
}

// ApplyEvent implements [projection.StreamApplier]. The transaction
// watches the stream's version key and the checkpoint, which only a new
// generation's first event writes: events of different streams do not
// contend.
func (s *Store) ApplyEvent(ctx context.Context, p projection.Projection[*Tx], e persistence.RecordedEvent) error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	k := s.keysOf(p.Name)
	version := k.streamVersion(e.StreamID)
	err := s.watch(ctx, func(conn *redis.Tx) error {
		st, err := readState(ctx, conn, k.checkpoint)
		if err != nil {
			return err
		}
		applied, err := conn.Get(ctx, version).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if e.Version <= applied {
			return nil
		}
		if e.Version > applied+1 {
			return &projection.GapError{Name: p.Name, Stream: e.StreamID, Applied: applied, Version: e.Version}
		}
		fresh := st.gen == 0
		t, err := begin(ctx, conn, k, &st, p)
		if err != nil {
			return err
		}
		if err := p.Handle(ctx, t, e); err != nil {
			if unavailable(err) {
				return err
			}
			return &projection.ApplyError{Index: 0, Event: e, Err: err}
		}
		t.track(0)
		if !st.ready || fresh {
			t.pipe.HSet(ctx, k.checkpoint, "gen", st.gen, "ready", 1)
		}
		t.pipe.Set(ctx, version, e.Version, 0)
		return t.exec(ctx, []persistence.RecordedEvent{e})
	}, k.checkpoint, version)
	var ae *projection.ApplyError
	var gap *projection.GapError
	if err != nil && !errors.As(err, &ae) && !errors.As(err, &gap) {
		return fmt.Errorf("projection/redis: apply to %s: %w", p.Name, err)
	}
	return err
}

// SkipEvent implements [projection.StreamApplier].
func (s *Store) SkipEvent(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	k := s.keysOf(name)
	version := k.streamVersion(e.StreamID)
	member, err := json.Marshal(projection.DeadLetter{Event: e, Error: cause.Error(), At: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("projection/redis: dead letter of %s: %w", name, err)
	}
	err = s.watch(ctx, func(conn *redis.Tx) error {
		applied, err := conn.Get(ctx, version).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if e.Version <= applied {
			return nil
		}
		if e.Version > applied+1 {
			return &projection.GapError{Name: name, Stream: e.StreamID, Applied: applied, Version: e.Version}
		}
		_, err = conn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.ZAdd(ctx, k.dead, redis.Z{Score: float64(e.GlobalPosition), Member: member})
			pipe.Set(ctx, version, e.Version, 0)
			return nil
		})
		return err
	}, version)
	var gap *projection.GapError
	if err != nil && !errors.As(err, &gap) {
		return fmt.Errorf("projection/redis: dead letter of %s at %s@%d: %w", name, e.StreamID, e.Version, err)
	}
	return err
}

// StreamVersion implements [projection.StreamApplier].
func (s *Store) StreamVersion(ctx context.Context, name, stream string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	v, err := s.client.Get(ctx, s.keysOf(name).streamVersion(stream)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projection/redis: version of %s in %s: %w", stream, name, err)
	}
	return v, nil
}

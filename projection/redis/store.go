// Package redis keeps projections' read models in Redis (go-redis v9). A
// batch's writes and the projection's checkpoint go to the server in one
// MULTI/EXEC transaction, guarded by WATCH on the checkpoint: either all of
// the batch lands with its checkpoint or none of it does, two runners never
// interleave, and a replayed batch is skipped by position, so every event
// takes effect once.
//
// # Keys
//
// All keys of a projection share the hash tag of its name, so they live in
// one slot of a Redis Cluster and one transaction can span them. With the
// default prefix "projection" and the projection order_history:
//
//	projection:{order_history}:live            checkpoint: hash of pos, gen, ready
//	projection:{order_history}:live:dead       dead letters: sorted set by position
//	projection:{order_history}:g3:<key>        the model's keys, generation 3
//	projection:{order_history}:live:stream:<s> last version of stream s applied (fed from the bus)
//
// Handlers name their keys through [Tx.Key], which adds the generation's
// prefix. A rebuild writes a new generation under a second checkpoint
// (":rebuild") and switches over by pointing the live checkpoint at it, in
// one transaction; then the old generation's keys are deleted. Queries that
// must never straddle a switch read through [Store.Read], which resolves
// the generation and reads the key in one server-side script.
//
// # What Redis cannot do
//
// Redis does not roll back a transaction in which a command fails at run
// time (WRONGTYPE, say): the other commands — the checkpoint included —
// take effect. The store records the event in the dead letters and reports
// the failure as an *projection.ApplyError matching [ErrPartiallyApplied];
// the runner goes on (or stops, under the Stop policy), and the only fix is
// the handler's, followed by a rebuild. Commands Redis refuses when they are queued (a wrong number
// of arguments) abort the whole transaction, and the failure is an ordinary
// handler failure with nothing applied.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

var (
	_ projection.Store[*Tx] = (*Store)(nil)
	_ projection.Rebuilder  = (*Store)(nil)

	_ projection.StreamApplier[*Tx] = (*Store)(nil)
)

// ErrPartiallyApplied is matched by the *projection.ApplyError of a batch
// in which Redis refused a command at run time: Redis applied the batch's
// other commands and its checkpoint (see the package documentation); the
// store recorded the event in the dead letters. It is
// [projection.ErrPartiallyApplied].
var ErrPartiallyApplied = projection.ErrPartiallyApplied

// maxWatchAttempts bounds how often Apply retries a transaction whose
// checkpoint changed under it (another runner, during a lease hand-over).
const maxWatchAttempts = 16

// Store keeps read models and their checkpoints in Redis. It is safe for
// concurrent use.
type Store struct {
	client redis.UniversalClient
	prefix string
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key the store writes. Default
// "projection".
func WithPrefix(prefix string) Option { return func(s *Store) { s.prefix = prefix } }

// New returns a store on client.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	s := &Store{client: client, prefix: "projection"}
	for _, o := range opts {
		o(s)
	}
	if s.prefix == "" || strings.ContainsAny(s.prefix, "{}") {
		return nil, fmt.Errorf("%w: key prefix %q: not empty, no braces", projection.ErrInvalid, s.prefix)
	}
	return s, nil
}

// keys are the keys of one store name: a projection or its generation
// being built.
type keys struct {
	base       string // prefix:{projection}:
	checkpoint string // hash: pos, gen, ready
	dead       string // sorted set of dead letters by position
}

// keysOf returns the keys of the store name name.
func (s *Store) keysOf(name string) keys {
	projectionName, role := name, "live"
	if p, ok := strings.CutSuffix(name, "__rebuild"); ok {
		projectionName, role = p, "rebuild"
	}
	base := s.prefix + ":{" + projectionName + "}:"
	return keys{base: base, checkpoint: base + role, dead: base + role + ":dead"}
}

// generation returns the prefix of the model keys of generation gen.
func (k keys) generation(gen int64) string { return k.base + "g" + strconv.FormatInt(gen, 10) + ":" }

// rebuilding is the key naming the generation being built, while a rebuild
// is in progress.
func (k keys) rebuilding() string { return k.base + "rebuilding" }

// streamVersion is the key of the last version of stream applied, when the
// projection is fed from the bus.
func (k keys) streamVersion(stream string) string { return k.checkpoint + ":stream:" + stream }

// gens is the counter generations are numbered from.
func (k keys) gens() string { return k.base + "gens" }

// state is a checkpoint hash, decoded.
type state struct {
	pos, gen int64
	ready    bool
}

func readState(ctx context.Context, c redis.Cmdable, key string) (state, error) {
	vals, err := c.HMGet(ctx, key, "pos", "gen", "ready").Result()
	if err != nil {
		return state{}, err
	}
	var st state
	for i, v := range vals {
		str, _ := v.(string)
		if str == "" {
			continue
		}
		n, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return state{}, fmt.Errorf("corrupt checkpoint %s: %q", key, str)
		}
		switch i {
		case 0:
			st.pos = n
		case 1:
			st.gen = n
		case 2:
			st.ready = n == 1
		}
	}
	return st, nil
}

// Checkpoint implements [projection.Store].
func (s *Store) Checkpoint(ctx context.Context, name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	st, err := readState(ctx, s.client, s.keysOf(name).checkpoint)
	if err != nil {
		return 0, fmt.Errorf("projection/redis: checkpoint of %s: %w", name, err)
	}
	return st.pos, nil
}

// Prefix returns the prefix of the current model's keys of the projection
// name, "" if it has none yet. A query that reads keys under it after a
// rebuild switched generations finds them gone; [Store.Read] has no such
// window.
func (s *Store) Prefix(ctx context.Context, name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	k := s.keysOf(name)
	st, err := readState(ctx, s.client, k.checkpoint)
	if err != nil {
		return "", fmt.Errorf("projection/redis: model of %s: %w", name, err)
	}
	if st.gen == 0 {
		return "", nil
	}
	return k.generation(st.gen), nil
}

// readScript resolves the current generation and runs one read-only
// command on a key of it, atomically.
var readScript = redis.NewScript(`#!lua flags=no-writes
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return false end
return redis.call(ARGV[1], KEYS[2] .. gen .. ':' .. ARGV[2], unpack(ARGV, 3))`)

// readCommands are the commands Read runs: read-only, with one key, the
// first argument — their other arguments are fields, members or ranges,
// never keys, so a read cannot reach beyond its projection's model.
var readCommands = map[string]bool{
	"GET": true, "STRLEN": true, "GETRANGE": true, "TYPE": true, // not EXISTS: it takes several keys
	"HGET": true, "HMGET": true, "HGETALL": true, "HKEYS": true, "HVALS": true, "HLEN": true, "HEXISTS": true, "HSTRLEN": true,
	"LRANGE": true, "LLEN": true, "LINDEX": true, "LPOS": true,
	"SMEMBERS": true, "SISMEMBER": true, "SMISMEMBER": true, "SCARD": true,
	"ZRANGE": true, "ZREVRANGE": true, "ZRANGEBYSCORE": true, "ZREVRANGEBYSCORE": true, "ZRANGEBYLEX": true, "ZREVRANGEBYLEX": true,
	"ZSCORE": true, "ZMSCORE": true, "ZCARD": true, "ZRANK": true, "ZREVRANK": true, "ZCOUNT": true, "ZLEXCOUNT": true,
}

// Read runs a read-only, single-key command — "GET", "HGETALL",
// "LRANGE", "ZREVRANGE", ... — on key of the current model of the
// projection name, with args after the key. Resolving the generation and
// reading happen in one server-side script, so a read never straddles a
// rebuild's switch-over. A model that does not exist yet reads as
// redis.Nil. A command that writes or takes several keys (MGET, say) is
// refused with projection.ErrInvalid: it could read keys of other
// projections or applications.
func (s *Store) Read(ctx context.Context, name, command, key string, args ...any) *redis.Cmd {
	err := checkName(name)
	if err == nil && !readCommands[strings.ToUpper(command)] {
		err = fmt.Errorf("%w: %s is not a single-key read", projection.ErrInvalid, persistence.Quote(command))
	}
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	k := s.keysOf(name)
	argv := append([]any{command, key}, args...)
	return readScript.Run(ctx, s.client, []string{k.checkpoint, k.base + "g"}, argv...)
}

// DeadLetter implements [projection.Store].
func (s *Store) DeadLetter(ctx context.Context, name string, e persistence.RecordedEvent, cause error) error {
	if err := checkName(name); err != nil {
		return err
	}
	k := s.keysOf(name)
	member, err := json.Marshal(projection.DeadLetter{Event: e, Error: cause.Error(), At: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("projection/redis: dead letter of %s: %w", name, err)
	}
	err = s.watch(ctx, func(conn *redis.Tx) error {
		st, err := readState(ctx, conn, k.checkpoint)
		if err != nil || e.GlobalPosition <= st.pos {
			return err
		}
		_, err = conn.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.ZAdd(ctx, k.dead, redis.Z{Score: float64(e.GlobalPosition), Member: member})
			pipe.HSet(ctx, k.checkpoint, "pos", e.GlobalPosition)
			return nil
		})
		return err
	}, k.checkpoint)
	if err != nil {
		return fmt.Errorf("projection/redis: dead letter of %s at %d: %w", name, e.GlobalPosition, err)
	}
	return nil
}

// DeadLetters implements [projection.Store].
func (s *Store) DeadLetters(ctx context.Context, name string) ([]projection.DeadLetter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	k := s.keysOf(name)
	members, err := s.client.ZRange(ctx, k.dead, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("projection/redis: dead letters of %s: %w", name, err)
	}
	out := make([]projection.DeadLetter, 0, len(members))
	for _, m := range members {
		var d projection.DeadLetter
		if err := json.Unmarshal([]byte(m), &d); err != nil {
			return nil, fmt.Errorf("projection/redis: dead letters of %s: corrupt entry: %w", name, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Drop deletes the projection name: its generations (one being built
// included), checkpoints and dead letters. A runner started afterwards
// builds it afresh. Not atomic: stop the projection's runner first.
func (s *Store) Drop(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unlinkMatching(ctx, s.client, globEscape(s.keysOf(name).base)+"*"); err != nil {
		return fmt.Errorf("projection/redis: drop %s: %w", name, err)
	}
	return nil
}

// watch runs fn in a WATCH transaction on keys, again while another client
// changes them first.
func (s *Store) watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	var err error
	for range maxWatchAttempts {
		err = s.client.Watch(ctx, fn, keys...)
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("contention: %w", err)
}

// unlinkMatching unlinks every key matching the glob pattern.
func unlinkMatching(ctx context.Context, c redis.Cmdable, pattern string) error {
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// globEscape escapes the glob metacharacters of SCAN MATCH.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func checkName(name string) error {
	if projection.ValidStoreName(name) {
		return nil
	}
	return fmt.Errorf("%w: projection name %q", projection.ErrInvalid, name)
}

// unavailable reports failures of the connection or the server rather than
// of a command.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM"} {
			if strings.HasPrefix(rerr.Error(), p) {
				return true
			}
		}
	}
	return false
}

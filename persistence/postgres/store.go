package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/composable-go/composable/persistence"
)

// ErrClosed is returned by [Store.Append] after Close.
var ErrClosed = errors.New("postgres: store closed")

// ErrCommitUnknown is matched by the error an Append returns when the
// connection failed while its transaction was committing: the events may or
// may not be stored. Retry with the same event ids — a
// [persistence.ErrDuplicateEvent] then means the first attempt committed.
var ErrCommitUnknown = errors.New("postgres: commit outcome unknown")

// Store is a [persistence.EventStore], [persistence.SnapshotStore] and
// [persistence.Notifier] on PostgreSQL. Appends from all goroutines go
// through one writer that commits them in shared transactions (group
// commit); see the package documentation for the guarantees. A Store is safe
// for concurrent use; Close it to stop the writer.
type Store struct {
	pool *pgxpool.Pool
	cfg  config
	q    queries

	gate     sync.RWMutex // orders Append against Close, as in package actor
	closed   bool
	requests chan *request
	stopped  chan struct{}

	snapshotRequests chan *snapshotRequest // to the snapshot writer; closed by Close
	snapshotsStopped chan struct{}

	metadata metadataCache // of appends' metadata JSON

	wake     sync.Mutex
	appended chan struct{} // closed and replaced after each commit
	// membersChanged is closed and replaced after a member joins or leaves.
	membersChanged chan struct{}

	// batches and batchedEvents count committed group-commit transactions
	// and their events (for benchmarks and, later, metrics).
	batches, batchedEvents atomic.Int64
	attempts               atomic.Int64 // transactions tried, for tests

	// beforeCommit, when set by a test before the first Append, runs inside
	// every append transaction just before COMMIT; an error aborts it.
	beforeCommit func() error

	listenOnce sync.Once
	listenStop context.CancelFunc
	listenDone chan struct{}

	ownsPool bool // opened by Open: Close closes the pool too
}

var (
	_ persistence.EventStore    = (*Store)(nil)
	_ persistence.SnapshotStore = (*Store)(nil)
	_ persistence.Notifier      = (*Store)(nil)
)

type config struct {
	schema         string
	maxEventSize   int
	maxBatchEvents int
	notify         bool
	batchTimeout   time.Duration
	logger         *slog.Logger
	connectTimeout time.Duration // Open's
	check          persistence.EventCheck
	fence          func() (id string, generation int64, ok bool)
}

// Option configures a [Store].
type Option func(*config)

// WithSchema puts the store's tables in schema (created if missing). Default
// "composable". Stores in different schemas are independent.
func WithSchema(schema string) Option { return func(c *config) { c.schema = schema } }

// WithMaxEventSize sets the largest accepted event (data and metadata) or
// snapshot Data, in bytes. Default [persistence.DefaultMaxEventSize].
func WithMaxEventSize(n int) Option { return func(c *config) { c.maxEventSize = n } }

// WithEventCheck adds a check the store runs on every event it is asked to
// append, after its own validation (see [persistence.EventCheck]): for
// example the Kafka bus's record limit, kafka.Bus.CheckEvent, so that an
// event the relay could never publish is refused at append. Checks given in
// several options all run, in order.
func WithEventCheck(c persistence.EventCheck) Option {
	return func(cfg *config) { cfg.check = persistence.Checks(cfg.check, c) }
}

// WithFence makes every append transaction check a cluster member's fence
// token — token returns the member's id and generation, and false while
// the member is out — against this store's members table
// (cluster/membership), as its last statement before COMMIT: a
// transaction of a member whose row expired fails with
// persistence.ErrFenced and is rolled back (only one whose check passed
// just before the expiry can still commit, within the time COMMIT takes),
// and one of a member that is out is refused without a round trip. The
// writer does not retry fenced appends. Give it the node's membership
// (node.Token, a *membership.Membership's method). It costs one statement
// in each transaction's round trip.
func WithFence(token func() (id string, generation int64, ok bool)) Option {
	return func(c *config) { c.fence = token }
}

// WithMaxBatchEvents caps the events the writer commits in one transaction.
// Default 1000.
func WithMaxBatchEvents(n int) Option { return func(c *config) { c.maxBatchEvents = n } }

// WithNotify turns the NOTIFY after each commit on or off (default on),
// and with it the LISTEN that [Store.Appended] and [Store.MembersChanged]
// start: without it, readers of either poll. Subscribers in other
// processes use the notification as a wake-up hint; without it they find new
// events by polling.
func WithNotify(on bool) Option { return func(c *config) { c.notify = on } }

// WithLogger sets where the store logs connection trouble. Default
// [slog.Default].
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithConnectTimeout bounds how long [Open] and the pool it opens wait for
// a connection to be established, unless the URL sets connect_timeout.
// Default 10 seconds.
func WithConnectTimeout(d time.Duration) Option { return func(c *config) { c.connectTimeout = d } }

// New applies the embedded migrations (idempotently, safe when several
// processes start at once) and starts the store's writer. The pool stays
// owned by the caller; Close the store before closing the pool.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	cfg := config{
		schema:         "composable",
		maxEventSize:   persistence.DefaultMaxEventSize,
		maxBatchEvents: 1000,
		notify:         true,
		batchTimeout:   30 * time.Second,
		logger:         slog.Default(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := migrations.Apply(ctx, pool, cfg.schema); err != nil {
		return nil, fmt.Errorf("postgres: migrate schema %q: %w", cfg.schema, err)
	}
	s := &Store{
		pool:           pool,
		cfg:            cfg,
		q:              newQueries(cfg.schema),
		requests:       make(chan *request, 4096),
		stopped:        make(chan struct{}),
		appended:       make(chan struct{}),
		membersChanged: make(chan struct{}),

		snapshotRequests: make(chan *snapshotRequest, 1024),
		snapshotsStopped: make(chan struct{}),
	}
	w := &writer{store: s, versions: map[string]int64{}, channelParam: []byte(s.q.channel),
		lockParam: binary.BigEndian.AppendUint64(nil, uint64(lockKey("append", cfg.schema)))}
	go w.run()
	go s.writeSnapshots()
	return s, nil
}

// ErrUnreachable is matched by Open's error when the server at the URL
// does not answer.
var ErrUnreachable = errors.New("postgres: server unreachable")

// Open connects to the database at url (a pgx connection string) with a
// pool of its own and returns a store on it, as New does; Close closes the
// pool too. An empty or bad URL fails with an error matching
// persistence.ErrInvalidInput — which never quotes the URL, whatever its
// spelling: it may hold a password — and a server that does not answer
// (within the connect timeout, see [WithConnectTimeout]) with one matching
// ErrUnreachable.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	if strings.TrimSpace(url) == "" {
		// pgx would connect with the libpq defaults: the OS user, the
		// default database, whatever the environment says.
		return nil, fmt.Errorf("%w: empty postgres connection string", persistence.ErrInvalidInput)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// Not wrapped, not quoted: pgx's redaction of passwords is best
		// effort, and the cause may quote the string.
		return nil, fmt.Errorf("%w: postgres connection string cannot be parsed (not shown: it may hold a password)", persistence.ErrInvalidInput)
	}
	cfg := config{connectTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 && cfg.connectTimeout > 0 {
		pcfg.ConnConfig.ConnectTimeout = cfg.connectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres connection string: %w", persistence.ErrInvalidInput, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, pool.Config().ConnConfig.Host, err)
	}
	s, err := New(ctx, pool, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

func (c config) validate() error {
	var errs []error
	switch {
	case c.schema == "":
		errs = append(errs, errors.New("empty schema"))
	case len(c.schema) > 63 || strings.ContainsRune(c.schema, 0) || !utf8.ValidString(c.schema):
		// PostgreSQL would truncate or mangle it, and two options naming one
		// schema would get different locks.
		errs = append(errs, fmt.Errorf("schema %s: at most 63 bytes of UTF-8, no NUL", persistence.Quote(c.schema)))
	}
	if c.maxEventSize <= 0 {
		errs = append(errs, fmt.Errorf("max event size %d", c.maxEventSize))
	}
	if c.maxBatchEvents <= 0 {
		errs = append(errs, fmt.Errorf("max batch events %d", c.maxBatchEvents))
	}
	if c.logger == nil {
		errs = append(errs, errors.New("nil logger"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: postgres options: %w", persistence.ErrInvalidInput, err)
	}
	return nil
}

// Close stops accepting appends, commits those already queued, and stops
// the writer and the notification listener. It is idempotent.
func (s *Store) Close() error {
	s.gate.Lock()
	if !s.closed {
		s.closed = true
		close(s.requests)
		close(s.snapshotRequests)
	}
	s.gate.Unlock()
	<-s.stopped
	<-s.snapshotsStopped
	// Waits for a concurrent first Appended to finish starting the listener,
	// and keeps later calls from starting one.
	s.listenOnce.Do(func() {})
	if s.listenStop != nil {
		s.listenStop()
		<-s.listenDone
	}
	if s.ownsPool {
		s.pool.Close() // the writer and the listener are done with it
	}
	return nil
}

// Append implements [persistence.EventStore]. It queues the append for the
// writer and waits for its transaction to commit. If ctx ends first, Append
// returns ctx's error and the append may still commit: retry with the same
// event ids, and treat [persistence.ErrDuplicateEvent] as success.
func (s *Store) Append(ctx context.Context, stream string, expected persistence.ExpectedVersion, events ...persistence.EventData) (persistence.AppendResult, error) {
	return s.AppendWithTimers(ctx, stream, expected, events, nil)
}

// AppendWithTimers implements [persistence.TimerStore]: the timer changes
// are written in the transaction of the events, after them.
func (s *Store) AppendWithTimers(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange) (persistence.AppendResult, error) {
	if err := persistence.ValidateAppend(stream, expected, events, s.cfg.maxEventSize); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := persistence.CheckEvents(s.cfg.check, stream, events); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := persistence.ValidateTimers(timers); err != nil {
		return persistence.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return persistence.AppendResult{}, err
	}
	r := newRequest(ctx, stream, expected, events, &s.metadata)
	if len(timers) > 0 {
		r.timers = persistence.CollapseTimers(timers)
	}
	r.done = make(chan result, 1)
	if err := s.enqueue(ctx, r); err != nil {
		return persistence.AppendResult{}, err
	}
	select {
	case res := <-r.done:
		return res.res, res.err
	case <-ctx.Done():
		return persistence.AppendResult{}, ctx.Err()
	}
}

// AppendAsync queues an append like Append and returns without waiting:
// done is called exactly once, on the writer's goroutine, with the
// outcome, unless AppendAsync returns an error (the append was not
// queued). done must not block. If ctx ends before the writer takes the
// append, done gets ctx's error; once taken, the append is decided and
// done called whatever ctx does, within the batch timeout. A wrapper that
// embeds *Store and overrides Append must override AppendAsync (and
// AppendWithTimersAsync) as well, or callers that prefer them (aggregate
// actors) bypass the override.
func (s *Store) AppendAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, done func(persistence.AppendResult, error)) error {
	return s.AppendWithTimersAsync(ctx, stream, expected, events, nil, done)
}

// AppendWithTimersAsync is AppendAsync for [Store.AppendWithTimers].
func (s *Store) AppendWithTimersAsync(ctx context.Context, stream string, expected persistence.ExpectedVersion, events []persistence.EventData, timers []persistence.TimerChange, done func(persistence.AppendResult, error)) error {
	if err := persistence.ValidateAppend(stream, expected, events, s.cfg.maxEventSize); err != nil {
		return err
	}
	if err := persistence.CheckEvents(s.cfg.check, stream, events); err != nil {
		return err
	}
	if err := persistence.ValidateTimers(timers); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := newRequest(ctx, stream, expected, events, &s.metadata)
	if len(timers) > 0 {
		r.timers = persistence.CollapseTimers(timers)
	}
	r.callback = done
	return s.enqueue(ctx, r)
}

func (s *Store) enqueue(ctx context.Context, r *request) error {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.requests <- r: // without asking ctx for Done, which may cost
		return nil
	default:
	}
	select {
	case s.requests <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Load implements [persistence.EventStore].
func (s *Store) Load(ctx context.Context, stream string, fromVersion int64) ([]persistence.RecordedEvent, error) {
	if !persistence.ValidStreamID(stream) { // PostgreSQL would refuse the text
		return nil, fmt.Errorf("%w: %s", persistence.ErrStreamNotFound, persistence.Quote(stream))
	}
	fromVersion = max(fromVersion, 1)
	// One round trip: the stream's version (which says whether it exists
	// and how many events to expect) and its events.
	b := &pgx.Batch{}
	var version int64
	b.Queue(s.q.streamVersion, stream).QueryRow(func(row pgx.Row) error { return row.Scan(&version) })
	var events []persistence.RecordedEvent
	b.Queue(s.q.load, stream, fromVersion).Query(func(rows pgx.Rows) error {
		var err error
		events, err = scanEvents(rows, int(max(version-fromVersion+1, 0)))
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("postgres: load %q: %w", stream, err)
	}
	if version == 0 {
		return nil, fmt.Errorf("%w: %s", persistence.ErrStreamNotFound, persistence.Quote(stream))
	}
	return events, nil
}

// ReadAll implements [persistence.EventStore]. The feed is gap-free because
// positions are assigned and committed in order (see the package
// documentation), so a plain ordered read is safe.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]persistence.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: %d", persistence.ErrBadLimit, limit)
	}
	rows, err := s.pool.Query(ctx, s.q.readAll, after, limit)
	if err == nil {
		var events []persistence.RecordedEvent
		if events, err = scanEvents(rows, min(limit, 1024)); err == nil {
			return events, nil
		}
	}
	return nil, fmt.Errorf("postgres: read all after %d: %w", after, err)
}

// Head implements [persistence.HeadReader]. Positions commit in order, so
// the highest committed one is the head of a gap-free feed.
func (s *Store) Head(ctx context.Context) (int64, error) {
	var head int64
	if err := s.pool.QueryRow(ctx, s.q.head).Scan(&head); err != nil {
		return 0, fmt.Errorf("postgres: read head: %w", err)
	}
	return head, nil
}

// SaveSnapshot implements [persistence.SnapshotStore].
func (s *Store) SaveSnapshot(ctx context.Context, snap persistence.Snapshot) error {
	if err := persistence.ValidateSnapshot(snap, s.cfg.maxEventSize); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &snapshotRequest{ctx: ctx, snap: snap, done: make(chan error, 1)}
	s.gate.RLock()
	if s.closed {
		s.gate.RUnlock()
		return ErrClosed
	}
	select {
	case s.snapshotRequests <- r:
	case <-ctx.Done():
		s.gate.RUnlock()
		return ctx.Err()
	}
	s.gate.RUnlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LoadSnapshot implements [persistence.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (persistence.Snapshot, bool, error) {
	if !persistence.ValidStreamID(stream) {
		return persistence.Snapshot{}, false, nil
	}
	snap := persistence.Snapshot{StreamID: stream}
	err := s.pool.QueryRow(ctx, s.q.loadSnapshot, stream).Scan(&snap.Version, &snap.SchemaVersion, &snap.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return persistence.Snapshot{}, false, nil
	}
	if err != nil {
		return persistence.Snapshot{}, false, fmt.Errorf("postgres: load snapshot of %q: %w", stream, err)
	}
	return snap, true, nil
}

// Appended implements [persistence.Notifier]. The channel closes after the
// next commit by this store, or — once the first call has started a
// listener on a pooled connection — after a NOTIFY from another process.
func (s *Store) Appended() <-chan struct{} {
	if s.cfg.notify {
		s.listenOnce.Do(s.startListener)
	}
	s.wake.Lock()
	defer s.wake.Unlock()
	return s.appended
}

// signalAppended wakes everyone waiting on Appended.
func (s *Store) signalAppended() {
	s.wake.Lock()
	close(s.appended)
	s.appended = make(chan struct{})
	s.wake.Unlock()
}

// queries holds the SQL texts, built once with the schema quoted in.
type queries struct {
	lock, streamVersions, existingIDs, head, insert, notify, locate string
	load, streamVersion, readAll                                    string
	saveSnapshots, loadSnapshot                                     string
	loadCheckpoint, saveCheckpoint                                  string
	changeTimers, timers, timersAfter, deleteTimer, marks           string
	channel                                                         string
	members                                                         memberQueries
	names                                                           struct{ insert, head, timers string } // of the writer's prepared statements
}

func newQueries(schema string) queries {
	events := pgx.Identifier{schema, "events"}.Sanitize()
	snapshots := pgx.Identifier{schema, "snapshots"}.Sanitize()
	timers := pgx.Identifier{schema, "timers"}.Sanitize()
	return queries{
		lock: "SELECT pg_advisory_xact_lock($1)",
		// One backward probe of the (stream_id, version) index per stream:
		// max(version) ... GROUP BY would read every event of every stream.
		streamVersions: "SELECT s.id, v.version FROM unnest($1::text[]) AS s(id) CROSS JOIN LATERAL " +
			"(SELECT e.version FROM " + events + " e WHERE e.stream_id = s.id ORDER BY e.version DESC LIMIT 1) AS v",
		existingIDs: "SELECT event_id FROM " + events + " WHERE event_id = ANY($1)",
		head:        "SELECT coalesce(max(global_position), 0) FROM " + events,
		// Positions continue the feed from its head, read inside the
		// statement: the write lock makes that head final.
		insert: "INSERT INTO " + events + " (global_position, stream_id, version, event_id, event_type, schema_version, data, metadata) " +
			"SELECT (SELECT coalesce(max(global_position), 0) FROM " + events + ") + u.n, s, v, i, t, sv, substring($6::bytea FROM o FOR l), NULLIF(m, '')::jsonb " +
			"FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[], $7::int4[], $8::int4[], $9::text[]) WITH ORDINALITY AS u(s, v, i, t, sv, o, l, m, n)",
		notify:        "SELECT pg_notify($1, '')",
		locate:        "SELECT event_id, version, global_position FROM " + events + " WHERE event_id = ANY($1)",
		load:          "SELECT " + columns + " FROM " + events + " WHERE stream_id = $1 AND version >= $2 ORDER BY version",
		streamVersion: "SELECT coalesce(max(version), 0) FROM " + events + " WHERE stream_id = $1",
		readAll:       "SELECT " + columns + " FROM " + events + " WHERE global_position > $1 ORDER BY global_position LIMIT $2",
		saveSnapshots: "INSERT INTO " + snapshots + " (stream_id, version, schema_version, data) " +
			"SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[], $4::bytea[]) " +
			"ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, data = EXCLUDED.data, saved_at = now() " +
			"WHERE " + snapshots + ".version <= EXCLUDED.version",
		loadSnapshot:   "SELECT version, schema_version, data FROM " + snapshots + " WHERE stream_id = $1",
		loadCheckpoint: "SELECT position FROM " + pgx.Identifier{schema, "checkpoints"}.Sanitize() + " WHERE name = $1",
		saveCheckpoint: "INSERT INTO " + pgx.Identifier{schema, "checkpoints"}.Sanitize() + " AS c (name, position) VALUES ($1, $2) " +
			"ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position), updated_at = now()",
		// Timer changes come collapsed (persistence.CollapseTimers), so the
		// keys deleted and those upserted are disjoint. A cancel with a
		// fire id deletes only that arming. The rows to delete are found
		// by one primary-key probe per change (LATERAL), then deleted by
		// ctid: a join of the table with the unnested changes would be
		// planned as a hash join over the whole table, in every
		// transaction that carries a timer change. LIMIT 1 (the key is
		// unique) keeps the planner from flattening the LATERAL subquery
		// into just such a join, which it does once a batch holds a few
		// dozen changes.
		changeTimers: "WITH gone AS (DELETE FROM " + timers + " WHERE ctid = ANY (ARRAY(SELECT x.ctid " +
			"FROM unnest($6::text[], $7::text[], $8::text[], $9::text[]) AS c(o, i, n, f) CROSS JOIN LATERAL " +
			"(SELECT t.ctid FROM " + timers + " t WHERE t.owner = c.o AND t.id = c.i AND t.name = c.n AND (c.f = '' OR t.fire_id = c.f) LIMIT 1) AS x))) " +
			"INSERT INTO " + timers + " (owner, id, name, due_ns, fire_id) " +
			"SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) " +
			"ON CONFLICT (owner, id, name) DO UPDATE SET due_ns = EXCLUDED.due_ns, fire_id = EXCLUDED.fire_id",
		// Timer order: due time, then id and name in byte order, as the
		// index keeps them; the row comparison pages on by that index.
		timers: "SELECT id, name, due_ns, fire_id FROM " + timers + ` WHERE owner = $1 ORDER BY due_ns, id COLLATE "C", name COLLATE "C" LIMIT $2`,
		timersAfter: "SELECT id, name, due_ns, fire_id FROM " + timers + ` WHERE owner = $1 AND (due_ns, id COLLATE "C", name COLLATE "C") > ($2, $3, $4) ` +
			`ORDER BY due_ns, id COLLATE "C", name COLLATE "C" LIMIT $5`,
		deleteTimer: "DELETE FROM " + timers + " WHERE owner = $1 AND id = $2 AND name = $3 AND fire_id = $4",
		// Marks share one due time: the timer index finds the owner's
		// marks, and only them, in id order.
		// Byte order (COLLATE "C"), as every store pages them.
		marks: fmt.Sprintf(`SELECT id, name, due_ns, fire_id FROM %s WHERE owner = $1 AND name = $2 AND due_ns = %d AND id > $3 COLLATE "C" ORDER BY id COLLATE "C" LIMIT $4`,
			timers, persistence.Never.UnixNano()),
		channel: fmt.Sprintf("composable_events_%016x", uint64(lockKey("notify", schema))),
		members: newMemberQueries(schema),
		names: struct{ insert, head, timers string }{
			insert: fmt.Sprintf("composable_insert_%016x", uint64(lockKey("insert", schema))),
			head:   fmt.Sprintf("composable_head_%016x", uint64(lockKey("head", schema))),
			timers: fmt.Sprintf("composable_timers_%016x", uint64(lockKey("timers", schema))),
		},
	}
}

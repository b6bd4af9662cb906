package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/composable-go/composable/persistence"
)

// The writer sends each append transaction through pgconn's pipeline with
// parameters it encodes itself, in binary, into buffers it keeps: pgx's
// query builder would encode every array element through an interface and
// grow a fresh parameter buffer for every batch, on the path every queued
// append waits on.

// txStatements are the append transaction's statements, prepared on one
// connection.
type txStatements struct {
	begin, setLocal, idleTimeout, customPlans, lock, fence, insert, head, timers, commit, notify *pgconn.StatementDescription
}

// statements prepares the append transaction's statements on conn. pgx's
// Prepare is idempotent for a name and its SQL: after the first batch on a
// connection it answers from the connection's map, without a round trip.
func (w *writer) statements(ctx context.Context, conn *pgx.Conn) (*txStatements, error) {
	q := &w.store.q
	var st txStatements
	for _, s := range []struct {
		sd        **pgconn.StatementDescription
		name, sql string
	}{
		{&st.begin, "composable_begin", "BEGIN ISOLATION LEVEL READ COMMITTED"},
		{&st.setLocal, "composable_sync_on", "SET LOCAL synchronous_commit TO on"},
		{&st.idleTimeout, fmt.Sprintf("composable_idle_timeout_%d", idleTimeoutMillis(w.store.cfg.batchTimeout)), idleTimeoutSQL(w.store.cfg.batchTimeout)},
		{&st.customPlans, "composable_custom_plans", "SET LOCAL plan_cache_mode TO force_custom_plan"},
		{&st.commit, "composable_commit", "COMMIT"},
		{&st.lock, "composable_lock", q.lock},
		{&st.insert, q.names.insert, q.insert},
		{&st.head, q.names.head, q.head},
		{&st.timers, q.names.timers, q.changeTimers},
		{&st.notify, "composable_notify", q.notify},
		{&st.fence, fmt.Sprintf("composable_fence_%016x", uint64(lockKey("fence", w.store.cfg.schema))), q.members.fence},
	} {
		sd, err := conn.Prepare(ctx, s.name, s.sql)
		if err != nil {
			return nil, err
		}
		*s.sd = sd
	}
	return &st, nil
}

// step is one statement of a pipelined round trip.
type step struct {
	sd           *pgconn.StatementDescription
	params       [][]byte
	resultBinary bool
	onResult     func(*pgconn.Result)
}

var binaryFormat = []int16{1}

// roundTrip sends steps in one pipeline and reads their results in order.
// It stops reading at the first error, as pgx's batches do, and returns
// it; the pipeline is closed either way (which drains the rest).
func roundTrip(ctx context.Context, conn *pgx.Conn, steps []step) error {
	pl := conn.PgConn().StartPipeline(ctx)
	for _, s := range steps {
		var resultFormats []int16
		if s.resultBinary {
			resultFormats = binaryFormat
		}
		pl.SendQueryStatement(s.sd, s.params, binaryFormat, resultFormats)
	}
	err := pl.Sync()
	for i := 0; err == nil && i < len(steps); i++ {
		var res any
		if res, err = pl.GetResults(); err != nil {
			break
		}
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			err = fmt.Errorf("postgres: unexpected pipeline result %T", res)
			break
		}
		r := rr.Read()
		if err = r.Err; err == nil && steps[i].onResult != nil {
			steps[i].onResult(r)
		}
	}
	if err == nil {
		var res any
		if res, err = pl.GetResults(); err == nil {
			if _, ok := res.(*pgconn.PipelineSync); !ok {
				err = fmt.Errorf("postgres: unexpected pipeline result %T, want the sync", res)
			}
		}
	}
	if closeErr := pl.Close(); err == nil {
		err = closeErr
	}
	return err
}

// encodeRows encodes the insert's parameters into the writer's buffers:
// the column arrays in PostgreSQL's binary array format, and the events'
// data as one bytea.
func (w *writer) encodeRows(rows *rowSet) [][]byte {
	const textOID, int4OID, int8OID = 25, 23, 20
	b := w.enc[:0]
	var ends [9]int
	b = appendTextArray(b, textOID, rows.streams)
	ends[0] = len(b)
	b = appendInt8Array(b, int8OID, rows.versions)
	ends[1] = len(b)
	b = appendTextArray(b, textOID, rows.ids)
	ends[2] = len(b)
	b = appendTextArray(b, textOID, rows.types)
	ends[3] = len(b)
	b = appendInt4Array(b, int4OID, rows.schemaVersions)
	ends[4] = len(b)
	b = append(b, rows.data...)
	ends[5] = len(b)
	b = appendInt4Array(b, int4OID, rows.offsets)
	ends[6] = len(b)
	b = appendInt4Array(b, int4OID, rows.lengths)
	ends[7] = len(b)
	b = appendTextArray(b, textOID, rows.metadata)
	ends[8] = len(b)
	if cap(b) <= maxKept {
		w.enc = b
	} else {
		w.enc = nil
	}
	params := w.params[:0]
	start := 0
	for _, end := range ends {
		params = append(params, b[start:end:end])
		start = end
	}
	w.params = params
	return params
}

// encodeTimers encodes the parameters of the timer changes' statement:
// the armed timers' columns (due in nanoseconds since the Unix epoch),
// then the disarmed ones' (fire id "" for an unconditional cancel). Timers are rare next to events, so the buffer
// is not kept.
func encodeTimers(changes []persistence.TimerChange) [][]byte {
	const textOID, int8OID = 25, 20
	var owners, ids, names, fires, gOwners, gIDs, gNames, gFires []string
	var dues []int64
	for _, c := range changes {
		t := c.Timer
		if c.Cancel {
			gOwners, gIDs, gNames, gFires = append(gOwners, t.Owner), append(gIDs, t.ID), append(gNames, t.Name), append(gFires, t.FireID)
			continue
		}
		owners, ids, names, fires = append(owners, t.Owner), append(ids, t.ID), append(names, t.Name), append(fires, t.FireID)
		dues = append(dues, t.Due.UnixNano())
	}
	return [][]byte{
		appendTextArray(nil, textOID, owners), appendTextArray(nil, textOID, ids), appendTextArray(nil, textOID, names),
		appendInt8Array(nil, int8OID, dues), appendTextArray(nil, textOID, fires),
		appendTextArray(nil, textOID, gOwners), appendTextArray(nil, textOID, gIDs), appendTextArray(nil, textOID, gNames),
		appendTextArray(nil, textOID, gFires),
	}
}

func appendArrayHeader(b []byte, elemOID uint32, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, elemOID)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return binary.BigEndian.AppendUint32(b, 1) // lower bound
}

func appendTextArray(b []byte, oid uint32, ss []string) []byte {
	b = appendArrayHeader(b, oid, len(ss))
	for _, s := range ss {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendInt8Array(b []byte, oid uint32, ns []int64) []byte {
	b = appendArrayHeader(b, oid, len(ns))
	for _, n := range ns {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

func appendInt4Array(b []byte, oid uint32, ns []int32) []byte {
	b = appendArrayHeader(b, oid, len(ns))
	for _, n := range ns {
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
	}
	return b
}

// errNoHead reports a head result that is not one bigint.
var errNoHead = errors.New("postgres: the new head was not one bigint")

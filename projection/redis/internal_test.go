package redis

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/composable-go/composable/persistence"
	"github.com/composable-go/composable/projection"
)

// serverError is an error as Redis sends it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// TestServerStateIsNotTheHandlers: a command refused because of the
// server's state (out of memory, a read-only replica after a failover) is
// a store failure, retried; one refused because of what the handler wrote
// is the handler's.
func TestServerStateIsNotTheHandlers(t *testing.T) {
	events := []persistence.RecordedEvent{{GlobalPosition: 1}}
	tx := &Tx{owners: []int{0}}
	failed := func(msg string) []redis.Cmder {
		c := redis.NewIntCmd(context.Background())
		c.SetErr(serverError(msg))
		return []redis.Cmder{c}
	}
	execAbort := serverError("EXECABORT Transaction discarded because of previous errors.")
	for _, msg := range []string{"OOM command not allowed when used memory > 'maxmemory'.", "READONLY You can't write against a read only replica.", "MASTERDOWN Link with MASTER is down"} {
		err := commandError(tx, failed(msg), events, execAbort)
		var ae *projection.ApplyError
		if errors.As(err, &ae) {
			t.Errorf("%q became a handler failure: %v", msg, err)
		}
	}
	err := commandError(tx, failed("ERR wrong number of arguments for 'set' command"), events, execAbort)
	var ae *projection.ApplyError
	if !errors.As(err, &ae) || ae.Index != 0 || errors.Is(err, ErrPartiallyApplied) {
		t.Errorf("a malformed command: %v, want an *ApplyError, nothing applied", err)
	}
	for _, msg := range []string{"WRONGTYPE Operation against a key holding the wrong kind of value", "OOM command not allowed when used memory > 'maxmemory'."} {
		// At run time, whatever the cause, the rest of the batch took effect.
		err = commandError(tx, failed(msg), events, serverError(msg))
		if !errors.As(err, &ae) || !errors.Is(err, ErrPartiallyApplied) {
			t.Errorf("a run-time refusal %q: %v, want an *ApplyError matching ErrPartiallyApplied", msg, err)
		}
	}
	// A Setup command refused at run time is blamed on the batch's first
	// event, so that it is recorded.
	setup := &Tx{owners: []int{-1, 0}}
	c := redis.NewIntCmd(context.Background())
	c.SetErr(serverError("WRONGTYPE Operation against a key holding the wrong kind of value"))
	err = commandError(setup, []redis.Cmder{c}, events, c.Err())
	if !errors.As(err, &ae) || ae.Index != 0 || !errors.Is(err, ErrPartiallyApplied) {
		t.Errorf("a Setup command refused at run time: %v, want an *ApplyError at index 0", err)
	}
}

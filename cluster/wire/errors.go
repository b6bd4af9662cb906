// Package wire is the format cluster nodes exchange: protobuf envelopes for
// a command sent to the node that owns its aggregate and for the reply
// (wire.proto; the generated code is committed), errors that keep their
// meaning across nodes, and the checks a node runs on what it receives.
package wire

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/persistence"
)

// ErrNotOwner is matched by the error of a node asked to handle a command
// for an aggregate it does not own under its view of the members: the
// caller looks the owner up again and retries there.
var ErrNotOwner = errors.New("cluster: this node does not own the aggregate")

// sentinels maps each code to the error it stands for. An error is sent
// with the code of every sentinel it matches, so that the error rebuilt on
// the calling node matches them all.
var sentinels = []sentinel{
	{Code_CODE_REJECTED, aggregate.ErrRejected},
	{Code_CODE_TOO_MANY_ATTEMPTS, aggregate.ErrTooManyAttempts},
	{Code_CODE_UNAVAILABLE, aggregate.ErrUnavailable},
	{Code_CODE_OVERLOADED, aggregate.ErrOverloaded},
	{Code_CODE_SHUTTING_DOWN, aggregate.ErrShuttingDown},
	{Code_CODE_UNKNOWN_TYPE, aggregate.ErrUnknownType},
	{Code_CODE_INVALID_DECISION, aggregate.ErrInvalidDecision},
	{Code_CODE_CORRUPT, persistence.ErrCorrupt},
	{Code_CODE_CORRUPT_STREAM, aggregate.ErrCorrupt},
	{Code_CODE_INVALID_ID, aggregate.ErrInvalidID},
	{Code_CODE_INVALID_INPUT, persistence.ErrInvalidInput},
	{Code_CODE_CONCURRENCY, persistence.ErrConcurrency},
	{Code_CODE_DUPLICATE_EVENT, persistence.ErrDuplicateEvent},
	{Code_CODE_RESERVED_METADATA, persistence.ErrReservedMetadata},
	{Code_CODE_FENCED, persistence.ErrFenced},
	{Code_CODE_DEADLINE_EXCEEDED, context.DeadlineExceeded},
	{Code_CODE_CANCELED, context.Canceled},
	{Code_CODE_NOT_OWNER, ErrNotOwner},
}

type sentinel struct {
	code Code
	err  error
}

// MaxErrorMessage bounds an error's text on the wire, in bytes.
const MaxErrorMessage = 4096

// EncodeError returns err as it goes on the wire: the codes of the
// framework's errors it matches, and its text, cut to MaxErrorMessage.
// A nil err is nil.
func EncodeError(err error) *Error {
	if err == nil {
		return nil
	}
	out := &Error{Message: cut(err.Error(), MaxErrorMessage)}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			out.Codes = append(out.Codes, s.code)
		}
	}
	return out
}

// DecodeError rebuilds an error sent with EncodeError: it has the text, and
// errors.Is matches it against each framework error its codes name (codes
// this node does not know are ignored). A nil e is nil.
func DecodeError(e *Error) error {
	if e == nil {
		return nil
	}
	r := &RemoteError{Message: cut(e.GetMessage(), MaxErrorMessage)}
	for _, c := range e.GetCodes() {
		if slices.ContainsFunc(sentinels, func(s sentinel) bool { return s.code == c }) && !slices.Contains(r.codes, c) {
			r.codes = append(r.codes, c)
		}
	}
	return r
}

// RemoteError is an error that happened on another node.
type RemoteError struct {
	// Message is the error's text on that node.
	Message string
	codes   []Code
}

func (e *RemoteError) Error() string { return e.Message }

// Is reports whether the error on the other node matched target, one of
// the framework's errors.
func (e *RemoteError) Is(target error) bool {
	for _, s := range sentinels {
		if s.err == target && slices.Contains(e.codes, s.code) {
			return true
		}
	}
	return false
}

// cut cuts s to at most n bytes, on a rune boundary, and makes it valid
// UTF-8 (protobuf strings must be).
func cut(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}

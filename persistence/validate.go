package persistence

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// DefaultMaxEventSize is the largest event — its data and its metadata's
// keys and values — a store accepts unless configured otherwise.
const DefaultMaxEventSize = 1 << 20

// AppendSizeFactor bounds one append: its events together (data and
// metadata) may hold at most this many times the event size limit — 64
// MiB by default. A larger append would hold every other writer behind it
// for as long as it takes, and reach the wire protocol's limits.
const AppendSizeFactor = 64

// MaxIDLength is the longest stream id, event id or event type, in bytes,
// a store accepts: far beyond any real name, and well within what an
// index entry can hold.
const MaxIDLength = 1024

// EventCheck is a further check a store runs on each event it is asked to
// append, after its own validation: what a later stage cannot carry — a
// bus's record size limit, say (kafka.Bus.CheckEvent). An error refuses
// the whole append, nothing written, and matches ErrInvalidInput (the
// store wraps it in ErrInvalidInput if it does not already).
type EventCheck func(stream string, e EventData) error

// Checks combines checks into one that runs each in turn and returns the
// first refusal.
func Checks(checks ...EventCheck) EventCheck {
	return func(stream string, e EventData) error {
		for _, c := range checks {
			if c == nil {
				continue
			}
			if err := c(stream, e); err != nil {
				return err
			}
		}
		return nil
	}
}

// CheckEvents runs check, if any, on each of events of stream, as stores
// do after ValidateAppend.
func CheckEvents(check EventCheck, stream string, events []EventData) error {
	if check == nil {
		return nil
	}
	for i, e := range events {
		if err := check(stream, e); err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				err = fmt.Errorf("%w: %w", ErrInvalidInput, err)
			}
			return fmt.Errorf("event %d (%s): %w", i, Quote(e.ID), err)
		}
	}
	return nil
}

// Quote quotes at most the first 64 bytes of a value for an error message
// or a log line, so that a hostile value cannot make either huge.
func Quote(v string) string {
	const max = 64
	if len(v) <= max {
		return fmt.Sprintf("%q", v)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", v[:cut], len(v))
}

// ValidateAppend checks an append's input the way every store must: it
// returns an error from the ErrInvalidInput family, or a *DuplicateEventError
// for an ID repeated within events. Stores call it before touching storage,
// so refused input writes nothing. maxEventSize bounds an event's size:
// its data and its metadata's keys and values; zero or less means
// DefaultMaxEventSize.
func ValidateAppend(stream string, expected ExpectedVersion, events []EventData, maxEventSize int) error {
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	if stream == "" {
		return ErrEmptyStreamID
	}
	if !validText(stream) {
		return fmt.Errorf("%w: stream id %s", ErrInvalidText, Quote(stream))
	}
	if len(stream) > MaxIDLength {
		return fmt.Errorf("%w: stream id %s, limit %d bytes", ErrTooLong, Quote(stream), MaxIDLength)
	}
	if expected < Any {
		return fmt.Errorf("%w: %d", ErrBadExpectedVersion, expected)
	}
	if len(events) == 0 {
		return ErrNoEvents
	}
	total := 0
	var seen map[string]struct{} // only for long appends; short ones compare
	if len(events) > 8 {
		seen = make(map[string]struct{}, len(events))
	}
	for i, e := range events {
		switch {
		case e.ID == "":
			return fmt.Errorf("%w (event %d)", ErrEmptyEventID, i)
		case e.Type == "":
			return fmt.Errorf("%w (event %d)", ErrEmptyEventType, i)
		case len(e.Data) > maxEventSize:
			return fmt.Errorf("%w: event %d has %d bytes, limit %d", ErrEventTooLarge, i, len(e.Data), maxEventSize)
		case e.SchemaVersion < 0 || e.SchemaVersion > math.MaxInt32:
			return fmt.Errorf("%w: event %d has schema version %d", ErrBadVersion, i, e.SchemaVersion)
		case !validText(e.ID) || !validText(e.Type):
			return fmt.Errorf("%w: event %d id or type", ErrInvalidText, i)
		case len(e.ID) > MaxIDLength || len(e.Type) > MaxIDLength:
			return fmt.Errorf("%w: event %d id %s or type %s, limit %d bytes", ErrTooLong, i, Quote(e.ID), Quote(e.Type), MaxIDLength)
		}
		size := len(e.Data)
		for k, v := range e.Metadata {
			if !validText(k) || !validText(v) {
				return fmt.Errorf("%w: event %d metadata %s", ErrInvalidText, i, Quote(k))
			}
			size += len(k) + len(v)
		}
		if size > maxEventSize {
			return fmt.Errorf("%w: event %d has %d bytes with its metadata, limit %d", ErrEventTooLarge, i, size, maxEventSize)
		}
		if total += size; total > AppendSizeFactor*maxEventSize {
			return fmt.Errorf("%w: events 0 to %d hold %d bytes, limit %d for one append", ErrAppendTooLarge, i, total, AppendSizeFactor*maxEventSize)
		}
		if seen == nil {
			for _, before := range events[:i] {
				if before.ID == e.ID {
					return &DuplicateEventError{ID: e.ID}
				}
			}
			continue
		}
		if _, dup := seen[e.ID]; dup {
			return &DuplicateEventError{ID: e.ID}
		}
		seen[e.ID] = struct{}{}
	}
	return nil
}

// ValidStreamID reports whether stream can name a stream: non-empty valid
// UTF-8 without NUL bytes. Reads of an id that is not valid find nothing.
func ValidStreamID(stream string) bool { return stream != "" && validText(stream) }

// validText reports whether s can be stored as PostgreSQL text or jsonb:
// valid UTF-8 without NUL bytes.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// ValidateSnapshot checks a snapshot the way every store must, returning an
// error from the ErrInvalidInput family. maxSize bounds len(Data) like
// ValidateAppend's maxEventSize; zero or less means DefaultMaxEventSize.
func ValidateSnapshot(s Snapshot, maxSize int) error {
	if maxSize <= 0 {
		maxSize = DefaultMaxEventSize
	}
	switch {
	case s.StreamID == "":
		return ErrEmptyStreamID
	case !validText(s.StreamID):
		return fmt.Errorf("%w: stream id %s", ErrInvalidText, Quote(s.StreamID))
	case s.Version < 1:
		return fmt.Errorf("%w: snapshot version %d", ErrBadVersion, s.Version)
	case s.SchemaVersion < 0 || s.SchemaVersion > math.MaxInt32:
		return fmt.Errorf("%w: snapshot schema version %d", ErrBadVersion, s.SchemaVersion)
	case len(s.Data) > maxSize:
		return fmt.Errorf("%w: snapshot has %d bytes, limit %d", ErrEventTooLarge, len(s.Data), maxSize)
	}
	return nil
}

package wire

import (
	"fmt"

	"github.com/composable-go/composable/persistence"
)

// Limits a node applies to the commands it receives from the wire, before
// it decodes or routes anything.
const (
	// MaxTypeLength bounds the aggregate type, as Register does.
	MaxTypeLength = 255
	// MaxMetadata bounds the number of metadata entries of a command.
	MaxMetadata = 64
	// MaxMetadataBytes bounds a command's metadata keys and values
	// together.
	MaxMetadataBytes = 64 << 10
)

// CheckCommand checks a command received from the wire: text that is
// valid and bounded, data within maxData bytes (persistence's event limit
// when 0 or less), no more than MaxMetadata entries, no metadata key the
// framework reserves, a deadline not before the epoch. It returns an
// error matching persistence.ErrInvalidInput that quotes at most a
// bounded prefix of the offending value.
func CheckCommand(c *Command, maxData int) error {
	if maxData <= 0 {
		maxData = persistence.DefaultMaxEventSize
	}
	switch {
	case c == nil:
		return fmt.Errorf("%w: no command", persistence.ErrInvalidInput)
	case c.AggregateType == "" || len(c.AggregateType) > MaxTypeLength || !text(c.AggregateType):
		return fmt.Errorf("%w: aggregate type %s", persistence.ErrInvalidInput, persistence.Quote(c.AggregateType))
	case c.AggregateId == "" || len(c.AggregateId) > persistence.MaxIDLength || !text(c.AggregateId):
		return fmt.Errorf("%w: aggregate id %s", persistence.ErrInvalidInput, persistence.Quote(c.AggregateId))
	case (c.CommandType == "" && !c.Query) || len(c.CommandType) > persistence.MaxIDLength || !text(c.CommandType):
		return fmt.Errorf("%w: command type %s", persistence.ErrInvalidInput, persistence.Quote(c.CommandType))
	case len(c.CommandId) > persistence.MaxIDLength || !text(c.CommandId):
		return fmt.Errorf("%w: command id %s", persistence.ErrInvalidInput, persistence.Quote(c.CommandId))
	case c.SchemaVersion < 0:
		return fmt.Errorf("%w: schema version %d", persistence.ErrInvalidInput, c.SchemaVersion)
	case len(c.Data) > maxData:
		return fmt.Errorf("%w: command data of %d bytes, limit %d", persistence.ErrEventTooLarge, len(c.Data), maxData)
	case len(c.Metadata) > MaxMetadata:
		return fmt.Errorf("%w: %d metadata entries, limit %d", persistence.ErrInvalidInput, len(c.Metadata), MaxMetadata)
	case c.DeadlineUnixNano < 0:
		return fmt.Errorf("%w: deadline %d", persistence.ErrInvalidInput, c.DeadlineUnixNano)
	case c.Timer != nil && (c.Timer.Name == "" || len(c.Timer.Name) > persistence.MaxIDLength || !text(c.Timer.Name) ||
		c.Timer.FireId == "" || len(c.Timer.FireId) > 4*persistence.MaxIDLength || !text(c.Timer.FireId)):
		return fmt.Errorf("%w: timer %s", persistence.ErrInvalidTimer, persistence.Quote(c.Timer.Name))
	}
	size := 0
	for k, v := range c.Metadata {
		switch {
		case k == "" || !text(k) || !text(v):
			return fmt.Errorf("%w: metadata key %s", persistence.ErrInvalidText, persistence.Quote(k))
		case persistence.ReservedMetadata(k):
			return fmt.Errorf("%w: %s", persistence.ErrReservedMetadata, persistence.Quote(k))
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataBytes {
		return fmt.Errorf("%w: %d bytes of metadata, limit %d", persistence.ErrInvalidInput, size, MaxMetadataBytes)
	}
	return nil
}

// text reports whether s is valid UTF-8 without NUL, as stores require.
func text(s string) bool { return s == "" || persistence.ValidStreamID(s) }

package persistence

import "fmt"

// Metadata keys the framework writes into EventData.Metadata. Other keys
// are the application's. The command id and type are reserved (see
// [ReservedMetadata]); correlation and causation ids may be passed on by
// the application.
const (
	// MetadataCommandID holds the id of the command that produced the
	// event, when the command had one; aggregates deduplicate by it.
	MetadataCommandID = "command-id"
	// MetadataCommandType holds the Go type of that command.
	MetadataCommandType = "command-type"
	// MetadataCorrelationID ties together everything one request caused,
	// across aggregates and sagas.
	MetadataCorrelationID = "correlation-id"
	// MetadataCausationID is the id of the message (command or event) that
	// directly caused this event.
	MetadataCausationID = "causation-id"
)

// ErrReservedMetadata is matched when a caller sets a metadata key only
// the framework may write. It matches ErrInvalidInput.
var ErrReservedMetadata = fmt.Errorf("%w: reserved metadata key", ErrInvalidInput)

// ReservedMetadata reports whether key is one only the framework writes —
// the command id and type, which deduplication trusts — so that callers'
// metadata cannot set it.
func ReservedMetadata(key string) bool {
	return key == MetadataCommandID || key == MetadataCommandType
}

package persistence

// Metadata keys the framework writes into EventData.Metadata. Other keys
// are the application's.
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

package persistence

import "errors"

// ErrCorrupt is matched by errors about stored data that cannot be read —
// an event or snapshot that does not decode, a stream with a gap: the
// data's fault, which no retry cures.
var ErrCorrupt = errors.New("persistence: corrupt data")

// Fault says whose fault an error is: what every component does with a
// failure depends on it, and [FaultOf] is where it is decided.
type Fault int

const (
	// FaultInfrastructure is the store, the broker, the network, a
	// timeout: retry with back-off. Any error not of the other kinds.
	FaultInfrastructure Fault = iota
	// FaultInput is the caller's input ([ErrInvalidInput]): refuse it at
	// once; a retry cannot help, and it says nothing of the system's
	// health — nobody else is made to wait.
	FaultInput
	// FaultData is stored or received data that cannot be read
	// ([ErrCorrupt]): a retry cannot help; skip it (dead-letter) or stop,
	// as the component's policy says.
	FaultData
)

// String names the fault.
func (f Fault) String() string {
	switch f {
	case FaultInput:
		return "input"
	case FaultData:
		return "data"
	default:
		return "infrastructure"
	}
}

// FaultOf classifies err (which must not be nil).
func FaultOf(err error) Fault {
	switch {
	case errors.Is(err, ErrCorrupt): // first: data that does not decode may wrap a codec's invalid-input error
		return FaultData
	case errors.Is(err, ErrInvalidInput):
		return FaultInput
	}
	return FaultInfrastructure
}

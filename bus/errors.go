package bus

import "errors"

// ErrInvalidMessage is matched by errors for messages or subscriptions a
// bus refuses: no topic, no group, no handler.
var ErrInvalidMessage = errors.New("bus: invalid message")

package bus

import (
	"fmt"

	"github.com/composable-go/composable/persistence"
)

// Decode returns the delivered event decoded with reg (upcasters included)
// as an E. An event that cannot be decoded is a [Permanent] error: a
// handler that returns it sends the delivery to the dead-letter topic at
// once instead of retrying.
func Decode[E any](reg *persistence.Registry, d Delivery) (E, error) {
	e, err := persistence.Decode[E](reg, d.Event.EventData)
	if err != nil {
		return e, Permanent(fmt.Errorf("bus: decode %s (%s v%d): %w", d.Event.ID, d.Event.Type, d.Event.SchemaVersion, err))
	}
	return e, nil
}

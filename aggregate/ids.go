package aggregate

import (
	"strconv"

	"github.com/google/uuid"
)

// eventNamespace is the UUID namespace of event ids derived from commands.
var eventNamespace = uuid.MustParse("6f0d7a4e-2b4c-5b8e-9a51-3c1d2e7f4a90")

// eventID derives the id of a command's i-th event from the stream and the
// command's instance id. Retrying the same command instance therefore
// reuses its event ids, and the store's duplicate check tells whether an
// attempt whose outcome was unknown landed.
func eventID(stream, instance string, i int) string {
	return uuid.NewSHA1(eventNamespace, []byte(stream+"\x00"+instance+"\x00"+strconv.Itoa(i))).String()
}

// newInstanceID names one command instance that carries no command id.
func newInstanceID() string { return uuid.NewString() }

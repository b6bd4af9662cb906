package wire_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/composable-go/composable/aggregate"
	"github.com/composable-go/composable/cluster/wire"
	"github.com/composable-go/composable/persistence"
)

// framework is every error a remote error may stand for.
var framework = []error{
	aggregate.ErrRejected, aggregate.ErrTooManyAttempts, aggregate.ErrUnavailable, aggregate.ErrOverloaded,
	aggregate.ErrShuttingDown, aggregate.ErrUnknownType, aggregate.ErrInvalidDecision, aggregate.ErrCorrupt,
	aggregate.ErrInvalidID, persistence.ErrCorrupt, persistence.ErrInvalidInput, persistence.ErrConcurrency,
	persistence.ErrDuplicateEvent, persistence.ErrReservedMetadata, persistence.ErrFenced,
	context.DeadlineExceeded, context.Canceled, wire.ErrNotOwner,
}

// TestErrorsKeepTheirMeaningAcrossNodes: an error sent through the wire —
// encoded, marshalled, unmarshalled, decoded — matches exactly the
// framework's errors the original matched, and keeps its text.
func TestErrorsKeepTheirMeaningAcrossNodes(t *testing.T) {
	cases := []error{
		fmt.Errorf("%w: out of stock", aggregate.ErrRejected),
		fmt.Errorf("%w: store said %w", aggregate.ErrInvalidDecision, persistence.ErrEventTooLarge),
		fmt.Errorf("%w: order/1 version 3", aggregate.ErrCorrupt),
		fmt.Errorf("%w: %q", aggregate.ErrInvalidID, "a\x00"),
		fmt.Errorf("%w after 3: %w", aggregate.ErrTooManyAttempts, &persistence.ConcurrencyError{Stream: "s", Expected: 1, Actual: 2}),
		fmt.Errorf("send: %w", context.DeadlineExceeded),
		fmt.Errorf("%w: member x", persistence.ErrFenced),
		wire.ErrNotOwner,
		errors.New("something else"),
	}
	for _, original := range cases {
		data, err := proto.Marshal(&wire.Reply{Error: wire.EncodeError(original)})
		if err != nil {
			t.Fatal(err)
		}
		var reply wire.Reply
		if err := proto.Unmarshal(data, &reply); err != nil {
			t.Fatal(err)
		}
		remote := wire.DecodeError(reply.GetError())
		if remote == nil || remote.Error() != original.Error() {
			t.Fatalf("%v came back as %v", original, remote)
		}
		for _, target := range framework {
			if errors.Is(remote, target) != errors.Is(original, target) {
				t.Errorf("%q: errors.Is(%v) is %v on the calling node, %v on the owner", original, target, errors.Is(remote, target), errors.Is(original, target))
			}
		}
	}
	if wire.EncodeError(nil) != nil || wire.DecodeError(nil) != nil {
		t.Fatal("nil is not nil across nodes")
	}
}

// TestHostileErrorsAreBounded: a huge or invalid text is cut to valid
// UTF-8 within the limit; unknown codes from a newer node are ignored.
func TestHostileErrorsAreBounded(t *testing.T) {
	e := wire.EncodeError(errors.New(strings.Repeat("é", wire.MaxErrorMessage) + "\xff"))
	if len(e.Message) > wire.MaxErrorMessage || len(e.Message) < wire.MaxErrorMessage-3 || !utf8.ValidString(e.Message) {
		t.Fatalf("message of %d bytes (valid UTF-8: %v)", len(e.Message), utf8.ValidString(e.Message))
	}
	if _, err := proto.Marshal(&wire.Reply{Error: e}); err != nil {
		t.Fatalf("a cut message does not marshal: %v", err)
	}
	remote := wire.DecodeError(&wire.Error{Codes: []wire.Code{wire.Code(999), wire.Code_CODE_REJECTED}, Message: "m"})
	if !errors.Is(remote, aggregate.ErrRejected) || errors.Is(remote, aggregate.ErrOverloaded) {
		t.Fatalf("decoded %v", remote)
	}
}

// TestCheckCommand: what a node receives is refused, with a typed error,
// when an id, type or metadata key is empty, too long or not text, the
// data is over the limit, or the metadata is too much or reserved.
func TestCheckCommand(t *testing.T) {
	good := func() *wire.Command {
		return &wire.Command{AggregateType: "order", AggregateId: "42", CommandType: "order.place", SchemaVersion: 1,
			Data: []byte("{}"), CommandId: "c-1", Metadata: map[string]string{"correlation-id": "x"}}
	}
	if err := wire.CheckCommand(good(), 0); err != nil {
		t.Fatalf("a good command: %v", err)
	}
	for name, bad := range map[string]func(c *wire.Command){
		"no type":           func(c *wire.Command) { c.AggregateType = "" },
		"long type":         func(c *wire.Command) { c.AggregateType = strings.Repeat("t", 256) },
		"no id":             func(c *wire.Command) { c.AggregateId = "" },
		"NUL id":            func(c *wire.Command) { c.AggregateId = "4\x002" },
		"long id":           func(c *wire.Command) { c.AggregateId = strings.Repeat("i", persistence.MaxIDLength+1) },
		"invalid type":      func(c *wire.Command) { c.CommandType = "\xff" },
		"long command id":   func(c *wire.Command) { c.CommandId = strings.Repeat("c", persistence.MaxIDLength+1) },
		"negative version":  func(c *wire.Command) { c.SchemaVersion = -1 },
		"large data":        func(c *wire.Command) { c.Data = make([]byte, 11) },
		"reserved metadata": func(c *wire.Command) { c.Metadata[persistence.MetadataCommandID] = "spoofed" },
		"NUL metadata":      func(c *wire.Command) { c.Metadata["k\x00"] = "v" },
		"empty key":         func(c *wire.Command) { c.Metadata[""] = "v" },
		"much metadata": func(c *wire.Command) {
			for i := range wire.MaxMetadata + 1 {
				c.Metadata[fmt.Sprint("k", i)] = "v"
			}
		},
		"large metadata":    func(c *wire.Command) { c.Metadata["big"] = strings.Repeat("v", wire.MaxMetadataBytes) },
		"negative deadline": func(c *wire.Command) { c.DeadlineUnixNano = -1 },
	} {
		c := good()
		bad(c)
		if err := wire.CheckCommand(c, 10); !errors.Is(err, persistence.ErrInvalidInput) || len(err.Error()) > 300 {
			t.Errorf("%s: %v, want a bounded ErrInvalidInput", name, err)
		}
	}
	if err := wire.CheckCommand(nil, 0); !errors.Is(err, persistence.ErrInvalidInput) {
		t.Fatalf("nil: %v", err)
	}
}

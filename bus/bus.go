package bus

import (
	"context"

	"github.com/composable-go/composable/persistence"
)

// Message is an event on the bus: a recorded event, the topic it goes to
// and its key. Messages with the same key keep their order.
type Message struct {
	// Topic names the destination, usually one per aggregate type.
	Topic string
	// Key orders messages: the bus delivers messages of one key in the
	// order they were published. It is the event's stream id.
	Key string
	// Event is the recorded event, with its id, type, schema version,
	// metadata, stream, version and global position.
	Event persistence.RecordedEvent
}

// Delivery is a message as a consumer receives it.
type Delivery struct {
	Message
	// Partition and Offset locate the message in its topic.
	Partition int32
	Offset    int64
	// Attempt counts deliveries of this message to the handler in this
	// consumer, from 1; Retry increments it.
	Attempt int
	// DeadLetter describes the original message when this delivery comes
	// from a dead-letter topic; nil otherwise.
	DeadLetter *DeadLetterInfo
}

// DeadLetterInfo is what a dead-lettered message carries about its
// failure.
type DeadLetterInfo struct {
	Error     string
	Attempts  int
	Topic     string
	Partition int32
	Offset    int64
	Group     string
	// Truncated, when set, says what the dead letter left out to fit the
	// bus's message size limit (the original's data and other headers,
	// say); the original's coordinates are kept.
	Truncated string
}

// Handler handles one delivery. It runs on the consumer's goroutine for
// the delivery's partition: deliveries of one key arrive one at a time, in
// order. Returning nil acknowledges the delivery; an error leaves it
// unacknowledged (see [Retry] for what happens next). Handlers must be
// idempotent: at-least-once delivery means duplicates are normal (see
// [IsRetryable] and the idempotent consumer in bus/postgres).
type Handler func(ctx context.Context, d Delivery) error

// Publisher publishes messages. Publish returns once the bus has durably
// accepted every message, or an error, in which case some may have been
// published: publishing is at-least-once. Implementations are safe for
// concurrent use.
type Publisher interface {
	Publish(ctx context.Context, msgs ...Message) error
}

// Subscriber consumes topics as a member of a consumer group: every group
// receives every message; within a group each message goes to one member.
// A new group starts from the oldest retained message.
type Subscriber interface {
	// Subscribe joins group and runs h for its share of topics' messages
	// until ctx ends (then it returns nil) or the subscription fails. A
	// delivery is acknowledged only after h returned nil; what a failing
	// handler leads to is set by the subscriber's [Retry] policy.
	Subscribe(ctx context.Context, group string, topics []string, h Handler) error
}

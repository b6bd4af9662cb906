package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/composable-go/composable/persistence"
)

// ErrPermanent is matched by errors marked with [Permanent]: retrying the
// delivery cannot help.
var ErrPermanent = errors.New("bus: permanent failure")

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{ErrPermanent, e.err} }

// Permanent marks err as not worth retrying: a [Retry] policy dead-letters
// the delivery at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsRetryable reports whether retrying a delivery that failed with err may
// succeed: every error except those marked with [Permanent] and those that
// are not the infrastructure's fault ([persistence.FaultOf]: the input's
// or the data's — a retry cannot cure them). (A handler whose own call was
// cancelled may well succeed next time; when the delivery itself is
// cancelled, nothing is retried anyway.)
func IsRetryable(err error) bool {
	return err != nil && !errors.Is(err, ErrPermanent) && persistence.FaultOf(err) == persistence.FaultInfrastructure
}

// Retry says what a subscriber does with a delivery whose handler fails:
// retry it in place, with exponential back-off, up to MaxAttempts
// deliveries, then publish it to a dead-letter topic and go on. A delivery
// failing with a [Permanent] error (or a panic, or an undecodable message)
// is dead-lettered at once. Deliveries after it on the same partition wait
// meanwhile, which keeps per-key order. A dead-letter publish that fails is
// retried with back-off, without running the handler again; until it
// succeeds the original is not acknowledged.
//
// The zero value retries transient failures forever and dead-letters only
// permanent ones.
type Retry struct {
	// MaxAttempts bounds deliveries of one message; 0 means no bound.
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the waits between attempts.
	// Defaults 100ms and 10s.
	InitialBackoff, MaxBackoff time.Duration
	// DeadLetterTopic names the topic a failed message goes to, from its
	// topic. Default: topic + ".dlq".
	DeadLetterTopic func(topic string) string
}

// DeadLetterTopicFor returns the dead-letter topic of topic under r.
func (r Retry) DeadLetterTopicFor(topic string) string {
	if r.DeadLetterTopic != nil {
		return r.DeadLetterTopic(topic)
	}
	return topic + ".dlq"
}

// DeadLetterer publishes a message that failed for good, with the failure
// recorded (in Kafka headers, for instance). A subscriber provides it.
type DeadLetterer func(ctx context.Context, d Delivery, info DeadLetterInfo) error

// Deliver runs h for d under policy r. It returns nil once the delivery is
// handled — h succeeded, or it failed for good and was dead-lettered — and
// an error when it must not be acknowledged: ctx ended, or the dead-letter
// publish failed. Subscribers call it for every delivery; group names the
// consumer group, for the dead-letter record.
func (r Retry) Deliver(ctx context.Context, group string, d Delivery, h Handler, deadLetter DeadLetterer) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = orDefault(r.InitialBackoff, 100*time.Millisecond)
	b.MaxInterval = orDefault(r.MaxBackoff, 10*time.Second)
	for attempt := 1; ; attempt++ {
		d.Attempt = attempt
		err := safeHandle(ctx, h, d)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !IsRetryable(err) || (r.MaxAttempts > 0 && attempt >= r.MaxAttempts) {
			if deadLetter == nil {
				return fmt.Errorf("bus: delivery of %s offset %d: %w", d.Topic, d.Offset, err)
			}
			info := DeadLetterInfo{Error: err.Error(), Attempts: attempt, Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Group: group}
			return r.deadLetter(ctx, d, info, deadLetter, err)
		}
		timer := time.NewTimer(b.NextBackOff())
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// deadLetter publishes d to the dead-letter topic, retrying a failed publish
// with back-off until it succeeds or ctx ends.
func (r Retry) deadLetter(ctx context.Context, d Delivery, info DeadLetterInfo, publish DeadLetterer, cause error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = orDefault(r.InitialBackoff, 100*time.Millisecond)
	b.MaxInterval = orDefault(r.MaxBackoff, 10*time.Second)
	for {
		err := publish(ctx, d, info)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("bus: dead-letter %s offset %d: %w (handler: %w)", d.Topic, d.Offset, err, cause)
		}
		timer := time.NewTimer(b.NextBackOff())
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("bus: dead-letter %s offset %d: %w (handler: %w)", d.Topic, d.Offset, err, cause)
		case <-timer.C:
		}
	}
}

// safeHandle runs h, turning a panic into a permanent error: a handler that
// panics on a message will panic on it again.
func safeHandle(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", v))
		}
	}()
	return h(ctx, d)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

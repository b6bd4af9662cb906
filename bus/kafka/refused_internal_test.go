package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/IBM/sarama"
)

// TestRefusedForGood: a send whose every message the broker refused for a
// reason no retry cures is permanent; any other failure is not.
func TestRefusedForGood(t *testing.T) {
	pes := func(errs ...error) error {
		var out sarama.ProducerErrors
		for _, err := range errs {
			out = append(out, &sarama.ProducerError{Err: err})
		}
		return fmt.Errorf("kafka bus: publish: %w", out)
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{pes(sarama.ErrMessageSizeTooLarge), true},
		{pes(sarama.ErrInvalidTopic, sarama.ErrInvalidRecord), true},
		{pes(sarama.ErrMessageSizeTooLarge, sarama.ErrNotLeaderForPartition), false},
		{pes(sarama.ErrOutOfBrokers), false},
		{pes(sarama.ErrInvalidMessage), false}, // CORRUPT_MESSAGE: damaged on the way, retried
		{pes(), false},
		{errors.New("connection refused"), false},
	} {
		if got := refusedForGood(tt.err); got != tt.want {
			t.Errorf("refusedForGood(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

func TestDeliverRetriesThenDeadLetters(t *testing.T) {
	quick := bus.Retry{MaxAttempts: 3, InitialBackoff: time.Microsecond, MaxBackoff: time.Microsecond}
	boom := errors.New("boom")
	tests := []struct {
		name       string
		policy     bus.Retry
		fails      int   // attempts that fail before success
		err        error // what failing attempts return
		dlErr      error // what dead-lettering returns
		wantErr    bool
		wantCalls  int
		wantLetter int // attempts recorded in the dead letter; 0 for none
	}{
		{"succeeds at once", quick, 0, boom, nil, false, 1, 0},
		{"succeeds on the last attempt", quick, 2, boom, nil, false, 3, 0},
		{"dead-lettered after the attempts", quick, 99, boom, nil, false, 3, 3},
		{"permanent: dead-lettered at once", quick, 99, bus.Permanent(boom), nil, false, 1, 1},
		{"no dead-letter topic policy: retry forever until success", bus.Retry{InitialBackoff: time.Microsecond, MaxBackoff: time.Microsecond}, 10, boom, nil, false, 11, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, letters := 0, 0
			h := func(_ context.Context, d bus.Delivery) error {
				calls++
				if d.Attempt != calls {
					t.Fatalf("attempt %d on call %d", d.Attempt, calls)
				}
				if calls <= tt.fails {
					return tt.err
				}
				return nil
			}
			dl := func(_ context.Context, d bus.Delivery, info bus.DeadLetterInfo) error {
				letters = info.Attempts
				if info.Group != "g" || info.Topic != "orders" || info.Offset != 42 || info.Error == "" {
					t.Fatalf("dead-letter info %+v", info)
				}
				return tt.dlErr
			}
			d := bus.Delivery{Message: bus.Message{Topic: "orders"}, Offset: 42}
			err := tt.policy.Deliver(context.Background(), "g", d, h, dl)
			if (err != nil) != tt.wantErr || calls != tt.wantCalls || letters != tt.wantLetter {
				t.Fatalf("err %v, calls %d, dead letter attempts %d", err, calls, letters)
			}
		})
	}
}

func TestDeliverStopsWithItsContextAndRecoversPanics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	policy := bus.Retry{InitialBackoff: time.Hour}
	err := policy.Deliver(ctx, "g", bus.Delivery{}, func(context.Context, bus.Delivery) error {
		cancel()
		return errors.New("fails while shutting down")
	}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	var info bus.DeadLetterInfo
	err = bus.Retry{MaxAttempts: 5}.Deliver(context.Background(), "g", bus.Delivery{}, func(context.Context, bus.Delivery) error {
		panic("handler bug")
	}, func(_ context.Context, _ bus.Delivery, i bus.DeadLetterInfo) error { info = i; return nil })
	if err != nil || info.Attempts != 1 {
		t.Fatalf("panic: err %v, info %+v (a panic is permanent)", err, info)
	}
	if bus.IsRetryable(bus.Permanent(errors.New("x"))) || !bus.IsRetryable(context.Canceled) || !bus.IsRetryable(errors.New("x")) || bus.IsRetryable(nil) {
		t.Fatal("IsRetryable")
	}
	// Not the infrastructure's fault: no retry cures it.
	if bus.IsRetryable(fmt.Errorf("handler: %w", persistence.ErrCorrupt)) || bus.IsRetryable(fmt.Errorf("handler: %w", persistence.ErrEventTooLarge)) {
		t.Fatal("IsRetryable of the data's or the input's fault")
	}
	if !errors.Is(bus.Permanent(context.DeadlineExceeded), context.DeadlineExceeded) || bus.Permanent(nil) != nil {
		t.Fatal("Permanent must keep the cause")
	}
}

func TestDecodeErrorsArePermanent(t *testing.T) {
	reg := persistence.NewRegistry()
	type placed struct{ N int }
	if err := persistence.Register[placed](reg, "placed"); err != nil {
		t.Fatal(err)
	}
	ok := bus.Delivery{Message: bus.Message{Event: persistence.RecordedEvent{EventData: persistence.EventData{Type: "placed", SchemaVersion: 1, Data: []byte(`{"N":3}`)}}}}
	if e, err := bus.Decode[placed](reg, ok); err != nil || e.N != 3 {
		t.Fatalf("%+v, %v", e, err)
	}
	bad := ok
	bad.Event.Type = "unknown"
	_, err := bus.Decode[placed](reg, bad)
	if !errors.Is(err, bus.ErrPermanent) || !errors.Is(err, persistence.ErrUnknownEventType) {
		t.Fatalf("err = %v", err)
	}
}

func TestFailedDeadLetterIsRetriedWithoutTheHandler(t *testing.T) {
	quick := bus.Retry{MaxAttempts: 2, InitialBackoff: time.Microsecond, MaxBackoff: time.Microsecond}
	calls, publishes := 0, 0
	err := quick.Deliver(context.Background(), "g", bus.Delivery{}, func(context.Context, bus.Delivery) error {
		calls++
		return errors.New("boom")
	}, func(context.Context, bus.Delivery, bus.DeadLetterInfo) error {
		publishes++
		if publishes < 4 {
			return errors.New("broker down")
		}
		return nil
	})
	if err != nil || calls != 2 || publishes != 4 {
		t.Fatalf("err %v, handler calls %d, dead-letter publishes %d", err, calls, publishes)
	}
	// While the dead letter cannot be published, the original is not
	// acknowledged: Deliver returns an error once its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = quick.Deliver(ctx, "g", bus.Delivery{}, func(context.Context, bus.Delivery) error { return errors.New("boom") },
		func(context.Context, bus.Delivery, bus.DeadLetterInfo) error { return errors.New("broker down") })
	if err == nil {
		t.Fatal("acknowledged although the dead letter was never published")
	}
}

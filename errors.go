package composable

import (
	"errors"
	"fmt"
)

// ErrPanic is matched (with [errors.Is]) by every [*PanicError]: a reducer
// or an effect panicked and the runtime recovered.
var ErrPanic = errors.New("composable: panic recovered")

// PanicError reports a recovered panic from user code: a reducer, an effect's
// Run function or a [Map] function.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the goroutine's stack at the point of the panic.
	Stack []byte
}

// Error describes the panic value; the stack is kept in Stack.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Is reports whether target is [ErrPanic].
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// Unwrap returns the panic value when it is an error, so that a panic with an
// error value still matches that error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

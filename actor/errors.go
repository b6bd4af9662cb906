package actor

import "errors"

// ErrStopped is returned by a [Store] or [System] that no longer accepts
// work: it was closed, or the store stopped after a panic under the
// [StopOnPanic] policy.
var ErrStopped = errors.New("actor: stopped")

// ErrInvalidConfig is matched by the error [Spawn] returns for a
// configuration that fails [Config.Validate].
var ErrInvalidConfig = errors.New("actor: invalid config")

// ErrNameTaken is returned by [Spawn] when another actor already has the
// configured name.
var ErrNameTaken = errors.New("actor: name taken")

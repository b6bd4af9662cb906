package composable

// Reducer evolves state for one action and says what should happen next.
//
// Reduce must be pure and deterministic: everything it needs arrives as its
// arguments (the state to mutate in place, the action, and the environment
// holding dependencies such as a [Clock]); it performs no I/O and starts no
// goroutines. Work with side effects is described by the returned [Effect],
// which the runtime runs and whose actions it feeds back into the same
// reducer. A runtime calls Reduce for one action at a time, never
// concurrently for the same state.
type Reducer[S, A, E any] interface {
	Reduce(state *S, action A, env E) Effect[A]
}

// ReducerFunc adapts an ordinary function to a [Reducer].
type ReducerFunc[S, A, E any] func(state *S, action A, env E) Effect[A]

// Reduce calls f(state, action, env).
func (f ReducerFunc[S, A, E]) Reduce(state *S, action A, env E) Effect[A] {
	return f(state, action, env)
}

// Combine returns a reducer that runs every given reducer, in order, on the
// same state and action, and merges their effects. Later reducers see the
// state as left by earlier ones.
func Combine[S, A, E any](reducers ...Reducer[S, A, E]) Reducer[S, A, E] {
	rs := append([]Reducer[S, A, E](nil), reducers...)
	return ReducerFunc[S, A, E](func(state *S, action A, env E) Effect[A] {
		effects := make([]Effect[A], 0, len(rs))
		for _, r := range rs {
			effects = append(effects, r.Reduce(state, action, env))
		}
		return Merge(effects...)
	})
}

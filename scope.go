package composable

// Case connects a child action type to a parent action type: Extract picks
// the child action out of a parent action (false when the parent action is
// about something else), and Embed wraps a child action as a parent action.
// With actions modelled as an interface implemented by one struct per case,
// Extract is a type assertion and Embed a struct literal.
type Case[A, C any] struct {
	Extract func(A) (C, bool)
	Embed   func(C) A
}

// ElementCase connects the actions of one element of a keyed collection to
// a parent action type: Extract picks the element id and child action out of
// a parent action, Embed wraps them back.
type ElementCase[A any, ID comparable, C any] struct {
	Extract func(A) (ID, C, bool)
	Embed   func(ID, C) A
}

// Scope lifts a child reducer to a parent: for each parent action that
// action.Extract recognises, it runs child on the part of the parent state
// that state points to, with the environment env derives from the parent's,
// and turns the child's effect actions back into parent actions with
// action.Embed. Other actions leave the state untouched and return [None].
//
// Combine a Scope with the parent's own reducer to handle both; put the
// Scope first when the parent should see the child's updated state.
func Scope[S, A, E, CS, CA, CE any](
	state func(*S) *CS,
	action Case[A, CA],
	env func(E) CE,
	child Reducer[CS, CA, CE],
) Reducer[S, A, E] {
	return ReducerFunc[S, A, E](func(s *S, a A, e E) Effect[A] {
		ca, ok := action.Extract(a)
		if !ok {
			return Effect[A]{}
		}
		return Map(child.Reduce(state(s), ca, env(e)), action.Embed)
	})
}

// ForEach runs a child reducer on the elements of a keyed collection held in
// the parent state, and the parent reducer on every action, in the order
// TCA's forEach does:
//
//  1. For an element action (action.Extract reports true) whose id is in the
//     collection, child runs on that element first; its effects run in the
//     element's own cancellation scope and their actions are wrapped back
//     with action.Embed. An element action for an id that is no longer in
//     the collection — typically a late effect action after removal — is
//     ignored by the child.
//  2. parent runs on the action (element actions included), seeing the
//     updated element.
//  3. Every element the step removed has all its running effects cancelled.
//
// elements points at the collection; id reads an element's id, which must be
// unique within the collection.
func ForEach[S, A, E any, ID comparable, CS, CA, CE any](
	parent Reducer[S, A, E],
	elements func(*S) *[]CS,
	id func(*CS) ID,
	action ElementCase[A, ID, CA],
	env func(E) CE,
	child Reducer[CS, CA, CE],
) Reducer[S, A, E] {
	ids := func(s *S) []ID {
		list := *elements(s)
		out := make([]ID, len(list))
		for i := range list {
			out[i] = id(&list[i])
		}
		return out
	}
	return ReducerFunc[S, A, E](func(s *S, a A, e E) Effect[A] {
		before := ids(s)
		var childEffect Effect[A]
		if elemID, ca, ok := action.Extract(a); ok {
			list := *elements(s)
			for i := range list {
				if id(&list[i]) != elemID {
					continue
				}
				embed := func(c CA) A { return action.Embed(elemID, c) }
				childEffect = inScope(any(elemID), Map(child.Reduce(&list[i], ca, env(e)), embed))
				break
			}
		}
		parentEffect := parent.Reduce(s, a, e)
		return Merge(childEffect, parentEffect, cancelScope[A](removed(before, ids(s))))
	})
}

// removed returns the ids in before that are missing from after.
func removed[ID comparable](before, after []ID) []any {
	if len(before) == len(after) {
		same := true
		for i := range before {
			if before[i] != after[i] {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	present := make(map[ID]struct{}, len(after))
	for _, v := range after {
		present[v] = struct{}{}
	}
	var out []any
	for _, v := range before {
		if _, ok := present[v]; !ok {
			out = append(out, v)
		}
	}
	return out
}

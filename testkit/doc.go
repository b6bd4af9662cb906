// Package testkit makes reducers, effects and actors testable
// deterministically, without sleeps.
//
//   - [TestStore] drives a reducer step by step and is exhaustive: every
//     state change must be asserted, every action an effect sends must be
//     received, and no effect may still run when the test ends.
//   - [ManualClock] is a [composable.Clock] that moves only when the test
//     advances it, firing due timers in order.
//   - [Probe] is a protoactor actor that records what it receives, replies,
//     and sends as a peer of the actor under test.
//   - [Eventually] waits for an asynchronous condition instead of sleeping.
//
// The kit reports failures through [TB], the subset of testing.TB it needs.
package testkit

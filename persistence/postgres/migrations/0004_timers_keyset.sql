-- Timers are read in timer order — due time, then id and name in byte
-- order — and paged by keyset: a scheduler reads each pending row once
-- per pass, however many rows before it are in flight or deleted but not
-- yet vacuumed. The index also serves the marks, which share one due
-- time, in id order.
CREATE INDEX timers_owner_due_key ON {{schema}}.timers (owner, due_ns, id COLLATE "C", name COLLATE "C");

DROP INDEX {{schema}}.timers_owner_due;

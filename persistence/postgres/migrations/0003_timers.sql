-- Durable timers: one row per pending timer of an aggregate (a saga
-- instance is one), written in the transaction of the events that armed or
-- disarmed it. The scheduler of an owner reads them earliest first. due_ns
-- is the due time in nanoseconds since the Unix epoch, so that it
-- round-trips exactly (read it with to_timestamp(due_ns / 1e9)).
CREATE TABLE {{schema}}.timers (
    owner   text        NOT NULL,
    id      text        NOT NULL,
    name    text        NOT NULL,
    due_ns  bigint      NOT NULL,
    fire_id text        NOT NULL,
    PRIMARY KEY (owner, id, name)
);

CREATE INDEX timers_owner_due ON {{schema}}.timers (owner, due_ns);

-- Durable timers: one row per pending timer of an aggregate (a saga
-- instance is one), written in the transaction of the events that armed or
-- disarmed it. The scheduler of an owner reads them earliest first.
CREATE TABLE {{schema}}.timers (
    owner   text        NOT NULL,
    id      text        NOT NULL,
    name    text        NOT NULL,
    due     timestamptz NOT NULL,
    fire_id text        NOT NULL,
    PRIMARY KEY (owner, id, name)
);

CREATE INDEX timers_owner_due ON {{schema}}.timers (owner, due);

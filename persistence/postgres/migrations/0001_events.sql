-- The event log. global_position is assigned by the store's single ordered
-- writer under a transaction-scoped advisory lock, so positions commit in
-- increasing order and a reader of the feed never skips one.
CREATE TABLE {{schema}}.events (
    global_position bigint      PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    metadata        jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);

CREATE TABLE {{schema}}.snapshots (
    stream_id      text        PRIMARY KEY,
    version        bigint      NOT NULL,
    schema_version integer     NOT NULL,
    data           bytea       NOT NULL,
    saved_at       timestamptz NOT NULL DEFAULT now()
);

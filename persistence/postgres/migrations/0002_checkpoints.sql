-- Checkpoints of readers of the global feed (the relay, projections).
CREATE TABLE {{schema}}.checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

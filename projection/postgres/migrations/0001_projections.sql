-- Checkpoints of projections (and of the generations being rebuilt). ready
-- says the generation's Setup ran: its schema and tables exist.
CREATE TABLE {{schema}}.checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    ready      boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a projection skipped under the SkipAndDeadLetter policy, whole, so
-- they can be inspected and replayed.
CREATE TABLE {{schema}}.dead_letters (
    name           text        NOT NULL,
    position       bigint      NOT NULL,
    event_id       text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    data           bytea       NOT NULL,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL,
    error          text        NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);

-- Rebuilds in progress: the generation being built for a projection.
CREATE TABLE {{schema}}.rebuilds (
    name       text        PRIMARY KEY,
    building   text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);

-- Cluster members (package cluster/membership): one row per join of a
-- node, alive while expires_at is ahead of the server's clock — the one
-- clock every node shares. An expired row never comes back: Renew only
-- extends a row still alive. Generations order joins; a member's id and
-- generation are its fence token, checked in every append transaction of
-- a store given WithFence.
CREATE TABLE {{schema}}.members (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    address     text        NOT NULL,
    kinds       text[]      NOT NULL,
    generation  bigint      NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE {{schema}}.member_generations;

-- fence raises SQLSTATE CMPFN, aborting the transaction, unless the member
-- is alive under that generation.
CREATE FUNCTION {{schema}}.fence(member text, gen bigint) RETURNS void
LANGUAGE plpgsql AS $composable_fence$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.members m
                   WHERE m.id = member AND m.generation = gen AND m.expires_at > now()) THEN
        RAISE EXCEPTION 'member % (generation %) is not alive', member, gen USING ERRCODE = 'CMPFN';
    END IF;
END
$composable_fence$;

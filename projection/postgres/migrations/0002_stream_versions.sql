-- The last version of each stream applied to a projection fed from the
-- bus, where only each stream's order holds: duplicates are skipped by it.
CREATE TABLE {{schema}}.stream_versions (
    name    text   NOT NULL,
    stream  text   NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (name, stream)
);

-- The fence reads the clock when it runs: now() is when the transaction
-- began, before it waited for the write lock, and a member that expired
-- meanwhile passed. The writer calls it last before COMMIT.
CREATE OR REPLACE FUNCTION {{schema}}.fence(member text, gen bigint) RETURNS void
LANGUAGE plpgsql AS $composable_fence$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.members m
                   WHERE m.id = member AND m.generation = gen AND m.expires_at > clock_timestamp()) THEN
        RAISE EXCEPTION 'member % (generation %) is not alive', member, gen USING ERRCODE = 'CMPFN';
    END IF;
END
$composable_fence$;

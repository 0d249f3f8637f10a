-- Audio retention as one function the application may call and nothing else: it runs as
-- earpiece_purger (SECURITY DEFINER, owned by it), so whoever calls it can purge only what the
-- retention rules say is due: audio of ended sessions older than their tenant's retention.
-- The application role gains no DELETE on audio_chunks, and nobody gains anything on the event
-- log. Each purge is recorded in audio_purges; the events that pointed at the audio stay.

CREATE FUNCTION purge_expired_audio(p_run_id text, p_limit integer DEFAULT 100)
RETURNS TABLE (session_id text, stream text, chunks integer, bytes bigint)
LANGUAGE plpgsql SECURITY DEFINER
-- Row-level security (migration 004) reads earpiece.tenant_id: the purge spans tenants. The
-- function's SET clause restores the caller's value on return.
SET earpiece.tenant_id = '*'
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    due record;
    s text;
    n integer;
    total bigint;
    lo bigint;
    hi bigint;
BEGIN
    FOR due IN
        SELECT ss.session_id, ss.tenant_id, r.audio_days
        FROM sessions ss JOIN tenant_retention r ON r.tenant_id = ss.tenant_id
        WHERE ss.ended_at IS NOT NULL
          AND ss.ended_at < now() - make_interval(days => r.audio_days)
          AND EXISTS (SELECT 1 FROM audio_chunks c WHERE c.session_id = ss.session_id)
        ORDER BY ss.ended_at
        LIMIT p_limit
    LOOP
        FOREACH s IN ARRAY ARRAY['input', 'output'] LOOP
            WITH gone AS (
                DELETE FROM audio_chunks c
                WHERE c.session_id = due.session_id AND c.stream = s
                RETURNING c.start_offset, octet_length(c.data) AS len
            )
            SELECT count(*), coalesce(sum(len), 0), min(start_offset), max(start_offset + len)
            INTO n, total, lo, hi FROM gone;
            IF n > 0 THEN
                INSERT INTO audio_purges (session_id, tenant_id, stream, start_offset,
                    end_offset, chunks, bytes, retention_days, run_id)
                VALUES (due.session_id, due.tenant_id, s, lo, hi, n, total, due.audio_days,
                        p_run_id);
                session_id := due.session_id;
                stream := s;
                chunks := n;
                bytes := total;
                RETURN NEXT;
            END IF;
        END LOOP;
    END LOOP;
END;
$$;

REVOKE ALL ON FUNCTION purge_expired_audio(text, integer) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_purger') THEN
        ALTER FUNCTION purge_expired_audio(text, integer) OWNER TO earpiece_purger;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        GRANT EXECUTE ON FUNCTION purge_expired_audio(text, integer) TO earpiece_app;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'purge_expired_audio left to the migration owner (insufficient privilege)';
END;
$$;

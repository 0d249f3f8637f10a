-- Replay for analysts: an append-only audit trail of every read, a per-session summary that
-- search runs on (transcripts under full-text search), and per-tenant audio retention with a
-- role that may only purge audio.

-- Who read what, when, from where. Append-only like the event log: reading a session never
-- changes the session's own log, and the record of the read can never be changed either.
CREATE TABLE replay_audit (
    audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    key_id     text NOT NULL,
    tenant_id  text COLLATE "C" NOT NULL,
    role       text NOT NULL,
    action     text NOT NULL,
    session_id text COLLATE "C",
    peer       text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX replay_audit_tenant_at ON replay_audit (tenant_id, at);
CREATE INDEX replay_audit_session_at ON replay_audit (session_id, at);

CREATE FUNCTION replay_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER replay_audit_no_update_delete BEFORE UPDATE OR DELETE ON replay_audit
    FOR EACH ROW EXECUTE FUNCTION replay_refuse_change();
CREATE TRIGGER replay_audit_no_truncate BEFORE TRUNCATE ON replay_audit
    FOR EACH STATEMENT EXECUTE FUNCTION replay_refuse_change();

-- Derived from the event log (never the other way round): rebuilt whenever it is older than
-- the log (last_seq), so it can be dropped and refilled at any time.
CREATE TABLE session_summaries (
    session_id          text COLLATE "C" PRIMARY KEY,
    tenant_id           text COLLATE "C" NOT NULL,
    last_seq            bigint NOT NULL,
    turns               integer NOT NULL,
    tool_names          text[] NOT NULL,
    error_kinds         text[] NOT NULL,
    interruptions       integer NOT NULL,
    first_audio_p50_ms  integer,
    first_audio_max_ms  integer,
    earpiece_p50_ms     integer,
    cost_usd            double precision NOT NULL,
    duration_ms         bigint NOT NULL,
    persona             text NOT NULL DEFAULT '',
    rerun_of            text,
    transcript          text NOT NULL,
    transcript_tsv      tsvector GENERATED ALWAYS AS (to_tsvector('english', transcript)) STORED,
    built_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_summaries_tsv ON session_summaries USING GIN (transcript_tsv);
CREATE INDEX session_summaries_tools ON session_summaries USING GIN (tool_names);
CREATE INDEX session_summaries_errors ON session_summaries USING GIN (error_kinds);
CREATE INDEX session_summaries_tenant_latency ON session_summaries (tenant_id, first_audio_max_ms);
CREATE INDEX sessions_prompt_hash ON sessions (tenant_id, prompt_hash);

-- Audio retention: days of stored audio per tenant (no row: kept for ever).
CREATE TABLE tenant_retention (
    tenant_id  text COLLATE "C" PRIMARY KEY,
    audio_days integer NOT NULL CHECK (audio_days >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each purge: which session's audio went, how much, when and by which run. Append-only; the
-- events that referred to the audio stay, so export and the viewer show it as purged.
CREATE TABLE audio_purges (
    purge_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id   text COLLATE "C" NOT NULL,
    tenant_id    text COLLATE "C" NOT NULL,
    stream       text NOT NULL,
    start_offset bigint NOT NULL,
    end_offset   bigint NOT NULL,
    chunks       integer NOT NULL,
    bytes        bigint NOT NULL,
    retention_days integer NOT NULL,
    run_id       text NOT NULL,
    purged_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audio_purges_session ON audio_purges (session_id, stream);
CREATE TRIGGER audio_purges_no_update_delete BEFORE UPDATE OR DELETE ON audio_purges
    FOR EACH ROW EXECUTE FUNCTION replay_refuse_change();
CREATE TRIGGER audio_purges_no_truncate BEFORE TRUNCATE ON audio_purges
    FOR EACH STATEMENT EXECUTE FUNCTION replay_refuse_change();

-- The purger: reads which sessions are past retention, deletes their audio chunks, records the
-- purge. Nothing else: no grant on session_events at all, no UPDATE anywhere.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_purger') THEN
        CREATE ROLE earpiece_purger NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'earpiece_purger not created (insufficient privilege); grants skipped';
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_purger') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO earpiece_purger', current_schema());
        GRANT SELECT (session_id, tenant_id, created_at, ended_at) ON sessions TO earpiece_purger;
        GRANT SELECT ON tenant_retention TO earpiece_purger;
        GRANT SELECT (session_id, stream, start_offset, data), DELETE ON audio_chunks
            TO earpiece_purger;
        GRANT INSERT ON audio_purges TO earpiece_purger;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        GRANT SELECT, INSERT ON replay_audit TO earpiece_app;
        GRANT SELECT, INSERT, UPDATE ON session_summaries TO earpiece_app;
        GRANT SELECT, INSERT, UPDATE ON tenant_retention TO earpiece_app;
        GRANT SELECT ON audio_purges TO earpiece_app;
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO earpiece_app',
                       current_schema());
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'replay grants skipped (insufficient privilege)';
END;
$$;

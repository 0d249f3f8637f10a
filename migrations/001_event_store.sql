-- The event store: sessions, their append-only event log, and their audio in ~1 s chunks.
-- Applied once by services/store/migrations.py inside one transaction.

-- Sessions: one row per conversation; the only table the application updates.
-- Ids are opaque ASCII tokens: COLLATE "C" compares them bytewise, which keeps every primary
-- key insert cheap whatever the database's locale (a linguistic collation costs each insert).
CREATE TABLE sessions (
    session_id  text COLLATE "C" PRIMARY KEY,
    tenant_id   text COLLATE "C" NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'ended')),
    config      jsonb NOT NULL,
    prompt_hash text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    end_reason  text
);

-- ListSessions filters by tenant and status and pages by (created_at, session_id).
CREATE INDEX sessions_tenant_status_created ON sessions (tenant_id, status, created_at);
CREATE INDEX sessions_created ON sessions (created_at, session_id);

-- Every event of every session. One writer per session assigns a gapless seq from 1, so the
-- primary key turns a second writer into a unique violation instead of an interleaving.
-- No foreign key to sessions: a per-row RI check would halve COPY throughput.
CREATE TABLE session_events (
    session_id      text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL CHECK (seq > 0),
    event_id        text NOT NULL,
    kind            text NOT NULL,
    source          text NOT NULL,
    producer_time   timestamptz,
    receive_time    timestamptz NOT NULL,
    -- The writing transaction: global readers stay below pg_snapshot_xmin so that an event
    -- whose transaction commits late is never skipped.
    tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    position        bigint GENERATED ALWAYS AS IDENTITY,
    -- The client's id for the message, for "a repeated id is accepted once".
    client_event_id text COLLATE "C",
    -- Where this event's audio lives (audio_chunks, by stream byte offset), if it has any.
    audio_stream    text CHECK (audio_stream IN ('input', 'output')),
    audio_offset    bigint,
    audio_length    integer,
    -- json, not jsonb: the payload's text is kept exactly as sent or received.
    payload         json NOT NULL,
    PRIMARY KEY (session_id, seq),
    CHECK ((audio_stream IS NULL) = (audio_offset IS NULL)
           AND (audio_stream IS NULL) = (audio_length IS NULL))
);

CREATE INDEX session_events_tx_position ON session_events (tx, position);
CREATE UNIQUE INDEX session_events_client_event_id
    ON session_events (session_id, client_event_id) WHERE client_event_id IS NOT NULL;

-- Audio, ~1 s per row. PCM does not compress, so EXTERNAL skips the futile pglz attempt and
-- keeps substring reads cheap. frame_offsets[i] is where frame i starts within data;
-- frame_times[i] is when it was received.
CREATE TABLE audio_chunks (
    session_id    text COLLATE "C" NOT NULL,
    stream        text NOT NULL CHECK (stream IN ('input', 'output')),
    start_offset  bigint NOT NULL CHECK (start_offset >= 0),
    data          bytea NOT NULL,
    frame_offsets integer[] NOT NULL,
    frame_times   timestamptz[] NOT NULL,
    PRIMARY KEY (session_id, stream, start_offset),
    CHECK (cardinality(frame_offsets) = cardinality(frame_times))
);
ALTER TABLE audio_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Append-only, enforced twice: this trigger stops even a superuser's UPDATE, DELETE and
-- TRUNCATE, and the application role below is never granted them.
CREATE FUNCTION session_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'session_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events are never changed; append a correcting event instead';
END;
$$;

CREATE TRIGGER session_events_no_update_delete
    BEFORE UPDATE OR DELETE ON session_events
    FOR EACH ROW EXECUTE FUNCTION session_events_refuse_change();

CREATE TRIGGER session_events_no_truncate
    BEFORE TRUNCATE ON session_events
    FOR EACH STATEMENT EXECUTE FUNCTION session_events_refuse_change();

-- The application role. The store's pool switches to it (SET ROLE) when the connecting user
-- may, so the missing UPDATE/DELETE grants apply to the service too. Roles are cluster-wide:
-- create it only if absent, and carry on without it where we may not create roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        CREATE ROLE earpiece_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'earpiece_app not created (insufficient privilege); grants skipped';
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created concurrently by a migration of another database
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO earpiece_app', current_schema());
        GRANT SELECT, INSERT ON session_events TO earpiece_app;
        GRANT SELECT, INSERT, UPDATE ON sessions TO earpiece_app;
        GRANT SELECT, INSERT ON audio_chunks TO earpiece_app;
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO earpiece_app',
                       current_schema());
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'grants to earpiece_app skipped (insufficient privilege)';
END;
$$;

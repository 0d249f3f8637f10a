-- Tenants: API keys, and row-level security by tenant on everything a session records.
-- Applied once by services/store/migrations.py, as the owner of the tables.

-- API keys. The key a caller holds is `ep_<key_id>_<secret>`: 32 random bytes of secret behind a
-- public id, so a lookup is one primary-key probe and only sha256(secret) is kept. A fast hash is
-- enough for a 256-bit random secret (nobody can search that space); a slow password hash would
-- only cost every call CPU time. Keys are revoked, never deleted, so the audit trail keeps them.
CREATE TABLE api_keys (
    key_id        text COLLATE "C" PRIMARY KEY,
    tenant_id     text COLLATE "C" NOT NULL,
    role          text NOT NULL CHECK (role IN ('client', 'analyst', 'admin')),
    secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Row-level security. The application sets `earpiece.tenant_id` on each connection it takes from
-- its pool (services/store/pool.py): the caller's tenant inside an RPC, '*' for the service's own
-- work (workflow activities, the event writers' background flushes, admin calls). Unset or empty
-- sees nothing. The owner (migrations, `earpiece keys`) is not subject to these policies.
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY sessions_by_tenant ON sessions
    USING (current_setting('earpiece.tenant_id', true) IN ('*', tenant_id))
    WITH CHECK (current_setting('earpiece.tenant_id', true) IN ('*', tenant_id));

-- Events and audio carry no tenant column (it would widen every COPY row): their session's row
-- decides, and that row is itself behind the sessions policy.
ALTER TABLE session_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY session_events_by_tenant ON session_events
    USING (current_setting('earpiece.tenant_id', true) = '*'
           OR EXISTS (SELECT 1 FROM sessions s
                      WHERE s.session_id = session_events.session_id
                        AND s.tenant_id = current_setting('earpiece.tenant_id', true)))
    WITH CHECK (current_setting('earpiece.tenant_id', true) = '*'
                OR EXISTS (SELECT 1 FROM sessions s
                           WHERE s.session_id = session_events.session_id
                             AND s.tenant_id = current_setting('earpiece.tenant_id', true)));

ALTER TABLE audio_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY audio_chunks_by_tenant ON audio_chunks
    USING (current_setting('earpiece.tenant_id', true) = '*'
           OR EXISTS (SELECT 1 FROM sessions s
                      WHERE s.session_id = audio_chunks.session_id
                        AND s.tenant_id = current_setting('earpiece.tenant_id', true)))
    WITH CHECK (current_setting('earpiece.tenant_id', true) = '*'
                OR EXISTS (SELECT 1 FROM sessions s
                           WHERE s.session_id = audio_chunks.session_id
                             AND s.tenant_id = current_setting('earpiece.tenant_id', true)));

-- The event writers' role. Postgres refuses COPY FROM into a table with row-level security to a
-- role subject to it, so the writers' COPYs run as this role, which bypasses it and may only read
-- and append events and audio. The application role may SET ROLE to it (and only to it); it does
-- not inherit the role, and BYPASSRLS is never inherited anyway.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_writer') THEN
        CREATE ROLE earpiece_writer NOLOGIN BYPASSRLS;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'earpiece_writer not created (insufficient privilege); writers use the '
                     'connecting role';
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created concurrently by a migration of another database
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO earpiece_writer', current_schema());
        GRANT SELECT, INSERT ON session_events, audio_chunks TO earpiece_writer;
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO earpiece_writer',
                       current_schema());
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
            GRANT earpiece_writer TO earpiece_app WITH INHERIT FALSE, SET TRUE;
        END IF;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'grants to earpiece_writer skipped (insufficient privilege)';
END;
$$;

-- The audio purger (003) works across tenants by design, within its narrow grants.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_purger') THEN
        CREATE POLICY sessions_purger ON sessions FOR SELECT TO earpiece_purger USING (true);
        CREATE POLICY audio_chunks_purger ON audio_chunks TO earpiece_purger USING (true);
    END IF;
END;
$$;

-- The application role may read keys (to check them), never write them: keys are managed as the
-- owner (`earpiece keys`). It must not bypass row-level security, whatever created it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app') THEN
        GRANT SELECT ON api_keys TO earpiece_app;
        -- so a service logging in as this role can tell that no migration is pending
        GRANT SELECT ON schema_migrations TO earpiece_app;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'earpiece_app' AND rolbypassrls) THEN
            ALTER ROLE earpiece_app NOBYPASSRLS;
        END IF;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'grants to earpiece_app skipped (insufficient privilege)';
END;
$$;

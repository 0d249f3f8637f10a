"""session_events is append-only: refused by a trigger (even for a superuser) and by the
application role's grants, which nothing the application's own login can do gets round."""

from __future__ import annotations

import asyncpg
import pytest

from services.runtime.postgres import ensure_app_login
from services.store import EventStore
from services.store.pool import APP_ROLE, WRITER_ROLE, create_pool
from tests.store.conftest import new_id

CHANGES = [
    "UPDATE session_events SET kind = 'tampered' WHERE session_id = $1",
    "DELETE FROM session_events WHERE session_id = $1",
]


async def _session_with_events(store: EventStore) -> str:
    session_id = new_id("immutable")
    writer = await store.open_writer(session_id)
    for i in range(3):
        writer.append(kind="test.keep", source="test", payload={"i": i})
    await writer.close()
    return session_id


async def test_trigger_refuses_changes_even_for_a_superuser(store: EventStore, pg_url: str) -> None:
    session_id = await _session_with_events(store)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT current_setting('is_superuser')") == "on"
        for sql in CHANGES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql, session_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only: TRUNCATE"):
            await conn.execute("TRUNCATE session_events")
        kinds = await conn.fetch(
            "SELECT kind FROM session_events WHERE session_id = $1", session_id
        )
    finally:
        await conn.close()
    assert [r["kind"] for r in kinds] == ["test.keep"] * 3


async def test_application_role_has_no_such_grant(store: EventStore, pg_url: str) -> None:
    session_id = await _session_with_events(store)
    pool = await create_pool(pg_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            for sql in CHANGES:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await conn.execute(sql, session_id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute("TRUNCATE session_events")
        # The role survives the pool's reset between acquisitions.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            privileges = await conn.fetchrow(
                "SELECT has_table_privilege($1, 'session_events', 'INSERT') AS ins,"
                " has_table_privilege($1, 'session_events', 'UPDATE') AS upd,"
                " has_table_privilege($1, 'session_events', 'DELETE') AS del,"
                " has_table_privilege($1, 'session_events', 'TRUNCATE') AS trunc,"
                " has_table_privilege($1, 'sessions', 'UPDATE') AS sessions_upd",
                APP_ROLE,
            )
    finally:
        await pool.close()
    assert privileges is not None
    assert dict(privileges) == {
        "ins": True,
        "upd": False,
        "del": False,
        "trunc": False,
        "sessions_upd": True,
    }
    assert len([e async for e in store.read_events(session_id)]) == 3


async def test_the_application_login_cannot_change_events_whatever_it_tries(
    store: EventStore, pg_url: str
) -> None:
    """The service logs in as earpiece_app (not SET ROLE from a superuser): it is no superuser,
    and no SET/RESET ROLE, session_replication_role or trigger switch gets it round the
    append-only rule."""
    session_id = await _session_with_events(store)
    app_url = await ensure_app_login(pg_url)
    conn = await asyncpg.connect(app_url)
    denied = asyncpg.InsufficientPrivilegeError
    try:
        facts = await conn.fetchrow(
            "SELECT session_user AS login, current_setting('is_superuser') AS su,"
            " (SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles"
            "  WHERE rolname = session_user) AS powers,"
            " (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            "  WHERE m.member = session_user::regrole AND r.rolsuper) AS superuser_memberships"
        )
        assert facts is not None
        assert dict(facts) == {
            "login": APP_ROLE,
            "su": "off",
            "powers": False,
            "superuser_memberships": 0,
        }

        async def refused_everything() -> None:
            for sql in CHANGES:
                with pytest.raises(denied):
                    await conn.execute(sql, session_id)
            with pytest.raises(denied):
                await conn.execute("TRUNCATE session_events")

        await refused_everything()
        await conn.execute("RESET ROLE")
        await refused_everything()
        for escape in (
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "SET session_replication_role = replica",
            "ALTER TABLE session_events DISABLE TRIGGER ALL",
            "ALTER TABLE session_events DISABLE TRIGGER session_events_no_update_delete",
            "DROP TRIGGER session_events_no_truncate ON session_events",
            "ALTER ROLE earpiece_app SUPERUSER",
            "CREATE TABLE escape_hatch (x int)",
        ):
            with pytest.raises(denied):
                await conn.execute(escape)
        # A grant by a non-owner only warns "no privileges were granted": still refused.
        await conn.execute("GRANT UPDATE, DELETE, TRUNCATE ON session_events TO earpiece_app")
        await refused_everything()
        # The one role it may become, the event writers', may append but change nothing either.
        await conn.execute(f"SET ROLE {WRITER_ROLE}")
        assert await conn.fetchval("SELECT current_user") == WRITER_ROLE
        await refused_everything()
        with pytest.raises(denied):
            await conn.execute("SET session_replication_role = replica")
        await conn.execute("RESET ROLE")
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
    finally:
        await conn.close()
    kinds = [e.kind async for e in store.read_events(session_id)]
    assert kinds == ["test.keep"] * 3

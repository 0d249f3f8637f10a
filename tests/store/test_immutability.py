"""session_events is append-only: refused by a trigger (even for a superuser) and by the
application role's grants."""

from __future__ import annotations

import asyncpg
import pytest

from services.store import EventStore
from services.store.pool import APP_ROLE, create_pool
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

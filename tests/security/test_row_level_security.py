"""Defence in depth: Postgres itself keeps tenants apart (row-level security), so a query that
forgets its tenant filter still returns nothing of another tenant's."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.store import EventStore
from services.store.pool import APP_ROLE, scoped_to
from services.store.sessions import SessionIdTaken


async def _session(store: EventStore, tenant: str) -> str:
    session_id = f"rls-{uuid.uuid4().hex[:12]}"
    await store.create_session(session_id=session_id, tenant_id=tenant, config={}, prompt_hash=None)
    writer = await store.open_writer(session_id)
    writer.append(kind="test.secret", source="test", payload={"card": "4111 1111 1111 1111"})
    await writer.close()
    return session_id


async def test_a_tenant_scope_sees_only_that_tenant(store: EventStore) -> None:
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    theirs = await _session(store, a)
    with scoped_to(b):
        mine = await _session(store, b)  # a tenant scope can write its own sessions
        assert await store.get_session(theirs) is None
        assert [e async for e in store.read_events(theirs)] == []
        assert await store.last_seq(theirs) == 0
        # No tenant filter at all: still only b's rows.
        listed = await store.list_sessions(page_size=10_000)
        assert {r.tenant_id for r in listed} == {b}
        assert await store.mark_ended(session_id=theirs, reason="hijack") is None
        with pytest.raises(SessionIdTaken):
            await store.create_session(session_id=theirs, tenant_id=b, config={}, prompt_hash=None)
        # Writing into another tenant's session is refused by the database.
        async with store.pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute(
                    "INSERT INTO session_events (session_id, seq, event_id, kind, source,"
                    " receive_time, payload) VALUES ($1, 99, 'x', 'forged', 'x', now(), '{}')",
                    theirs,
                )
        assert [e.kind async for e in store.read_events(mine)] == ["test.secret"]
    record = await store.get_session(theirs)
    assert record is not None and record.status == "active"
    assert [e.kind async for e in store.read_events(theirs)] == ["test.secret"]


async def test_an_app_connection_without_a_scope_sees_nothing(
    store: EventStore, pg_url: str
) -> None:
    session_id = await _session(store, f"t-{uuid.uuid4().hex[:6]}")
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        for table in ("sessions", "session_events", "audio_chunks"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        assert (
            await conn.fetchval("SELECT count(*) FROM sessions WHERE session_id = $1", session_id)
            == 0
        )
    finally:
        await conn.close()


async def test_the_scope_does_not_outlive_its_connection_use(store: EventStore) -> None:
    """The pool resets each connection on release, so the next caller never inherits a scope."""
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    with scoped_to(tenant):
        async with store.pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_setting('earpiece.tenant_id')") == tenant
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_setting('earpiece.tenant_id')") == "*"

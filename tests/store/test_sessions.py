"""Sessions: idempotent create and end, keyset-paged listing."""

from __future__ import annotations

import asyncio

from services.store import EventStore
from tests.store.conftest import new_id


async def test_create_get_and_idempotent_create(store: EventStore) -> None:
    session_id, tenant = new_id("sess"), new_id("tenant")
    config = {"voice": "marin", "tools": ["lookup"], "nested": {"n": 1}}
    created = await store.create_session(
        session_id=session_id, tenant_id=tenant, config=config, prompt_hash="abc"
    )
    assert created.created and created.status == "active" and created.config == config
    assert created.ended_at is None and created.end_reason is None
    again = await store.create_session(
        session_id=session_id, tenant_id="other", config={}, prompt_hash=None
    )
    assert not again.created
    assert (again.tenant_id, again.config, again.prompt_hash) == (tenant, config, "abc")
    fetched = await store.get_session(session_id)
    assert fetched is not None and fetched.created_at == created.created_at
    assert not fetched.created
    assert await store.get_session(new_id("missing")) is None


async def test_mark_ended_is_idempotent(store: EventStore) -> None:
    session_id = new_id("end")
    await store.create_session(session_id=session_id, tenant_id="t", config={}, prompt_hash=None)
    ended = await store.mark_ended(session_id=session_id, reason="client_ended")
    assert ended is not None and ended.status == "ended" and ended.end_reason == "client_ended"
    assert ended.ended_at is not None
    again = await store.mark_ended(session_id=session_id, reason="idle_timeout")
    assert again is not None
    assert (again.end_reason, again.ended_at) == ("client_ended", ended.ended_at)
    assert await store.mark_ended(session_id=new_id("missing"), reason="x") is None


async def test_list_pages_by_keyset(store: EventStore) -> None:
    tenant = new_id("tenant")
    ids = []
    for _ in range(7):
        session_id = new_id("list")
        await store.create_session(
            session_id=session_id, tenant_id=tenant, config={}, prompt_hash=None
        )
        ids.append(session_id)
    await asyncio.gather(*(store.mark_ended(session_id=i, reason="done") for i in ids[:2]))

    pages, after = [], None
    while page := await store.list_sessions(
        tenant_id=tenant, status=None, page_size=3, after=after
    ):
        pages.append([r.session_id for r in page])
        after = page[-1].cursor
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids  # creation order

    newest = await store.list_sessions(tenant_id=tenant, page_size=4, newest_first=True)
    assert [r.session_id for r in newest] == ids[::-1][:4]
    older = await store.list_sessions(
        tenant_id=tenant, page_size=10, after=newest[-1].cursor, newest_first=True
    )
    assert [r.session_id for r in older] == ids[::-1][4:]

    active = await store.list_sessions(tenant_id=tenant, status="active", page_size=10)
    assert [r.session_id for r in active] == ids[2:]
    ended = await store.list_sessions(tenant_id=tenant, status="ended", page_size=10)
    assert [r.session_id for r in ended] == ids[:2]
    anyone = await store.list_sessions(status="active", page_size=2)
    assert len(anyone) == 2

"""The global catch-up read never passes an event whose transaction has yet to commit."""

from __future__ import annotations

import asyncpg

from services.store import EventStore
from tests.store.conftest import drain, new_id


async def test_late_commit_is_not_skipped(store: EventStore, pg_url: str) -> None:
    held_session, late_session = new_id("held"), new_id("late")
    held = await asyncpg.connect(pg_url)
    try:
        tx = held.transaction()
        await tx.start()
        # This transaction takes its id first, then holds its insert uncommitted ...
        await held.execute(
            "INSERT INTO session_events (session_id, seq, event_id, kind, source, receive_time,"
            " payload) VALUES ($1, 1, 'held-1', 'test.held', 'test', now(), '{}')",
            held_session,
        )
        # ... while a later transaction commits its event.
        writer = await store.open_writer(late_session)
        writer.append(kind="test.late", source="test", payload={})
        await writer.close()

        before = await drain(store, after=None)
        seen = {e.session_id for e in before}
        assert late_session not in seen  # committed, but behind a running transaction
        assert held_session not in seen
        assert [e.seq async for e in store.read_events(late_session)] == [1]  # per-session: fine
        last = before[-1].global_position if before else None

        await tx.commit()
        after = await drain(store, after=last)
        ours = [e.session_id for e in after if e.session_id in {held_session, late_session}]
        assert ours == [held_session, late_session]
    finally:
        await held.close()


async def test_pages_follow_tx_then_position(store: EventStore) -> None:
    session_id = new_id("pages")
    writer = await store.open_writer(session_id)
    for i in range(30):
        writer.append(kind="test.page", source="test", payload={"i": i})
        if i % 10 == 9:
            await writer.flush()  # three transactions
    await writer.close()
    everything = []
    after = None
    while page := await store.read_all(after=after, limit=7):
        assert len(page) <= 7
        everything.extend(page)
        after = page[-1].global_position
    keys = [e.global_position for e in everything]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    mine = [e for e in everything if e.session_id == session_id]
    assert [e.seq for e in mine] == list(range(1, 31))
    assert len({e.tx for e in mine}) == 3

"""ReadEvents in pages over the real gRPC API: every event exactly as stored (times to the
microsecond, producer time absent or present, payload text untouched, non-ASCII included), in
order, in pages of at most 1,000 events or about 1 MiB, with `after_seq` and `limit` across page
boundaries, and the client library still handing events over one by one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.api.earpiece.v1 import replay_pb2 as pb
from services.api.earpiece.v1 import replay_pb2_grpc
from services.client import EarpieceClient
from services.gateway.convert import PAGE_BYTES, PAGE_EVENTS
from services.gateway.server import RunningGateway
from services.store.event_store import EventStore
from services.store.events import StoredEvent

EVENTS = 2_600
BIG = 300_000  # four of these pass a page's byte budget
T0 = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)  # before the epoch: floor division


@pytest.fixture(scope="module")
async def logged(store: EventStore) -> tuple[str, list[StoredEvent]]:
    """A session of EVENTS events: small ones, a run of big ones, a non-ASCII one, some with a
    producer time (one before 1970)."""
    session_id = f"read-pages-{uuid.uuid4().hex[:8]}"
    await store.create_session(session_id=session_id, tenant_id="acme", config={}, prompt_hash=None)
    writer = await store.open_writer(session_id)
    for i in range(EVENTS):
        payload: dict[str, object] = {"i": i}
        if 1_100 <= i < 1_108:
            payload["blob"] = "x" * BIG
        if i == 5:
            payload["text"] = "Grüße, ½ — 🎧"
        produced = T0 + timedelta(microseconds=i * 1_234_567) if i % 3 == 0 else None
        writer.append(kind="test.tick", source="test", payload=payload, producer_time=produced)
    await writer.close()
    return session_id, [e async for e in store.read_events(session_id)]


def _same(got: pb.Event, want: StoredEvent) -> None:
    assert (got.session_id, got.seq, got.event_id, got.kind, got.source, got.position) == (
        want.session_id,
        want.seq,
        want.event_id,
        want.kind,
        want.source,
        want.position,
    )
    assert got.payload_json == want.payload_json
    assert got.receive_time.ToDatetime(tzinfo=UTC) == want.receive_time
    if want.producer_time is None:
        assert not got.HasField("producer_time")
    else:
        assert got.producer_time.ToDatetime(tzinfo=UTC) == want.producer_time


async def _pages(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, session_id: str, **fields: int
) -> list[pb.ReadEventsResponse]:
    call = replay.ReadEvents(pb.ReadEventsRequest(session_id=session_id, **fields))
    return [page async for page in call]


async def test_pages_carry_every_event_as_stored(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, logged: tuple[str, list[StoredEvent]]
) -> None:
    session_id, stored = logged
    pages = await _pages(replay, session_id)
    got = [e for page in pages for e in page.events]
    assert len(got) == len(stored) == EVENTS
    for event, want in zip(got, stored, strict=True):
        _same(event, want)
    assert all(0 < len(p.events) <= PAGE_EVENTS for p in pages)
    # The big events split their pages by bytes, and no page passes ~1 MiB by more than one event.
    assert len(pages) > -(-EVENTS // PAGE_EVENTS)
    assert all(p.ByteSize() <= PAGE_BYTES + BIG + 1_000 for p in pages)
    assert any(p.ByteSize() > PAGE_BYTES // 2 for p in pages)


async def test_after_seq_and_limit_across_pages(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub,
    gateway: RunningGateway,
    logged: tuple[str, list[StoredEvent]],
) -> None:
    session_id, _ = logged

    async def seqs(**fields: int) -> list[int]:
        return [e.seq for p in await _pages(replay, session_id, **fields) for e in p.events]

    assert await seqs(after_seq=999, limit=1_502) == list(range(1_000, 2_502))
    assert await seqs(limit=1) == [1]
    assert await seqs(limit=EVENTS + 5) == list(range(1, EVENTS + 1))
    assert await seqs(after_seq=2_599) == [2_600]
    assert await _pages(replay, session_id, after_seq=EVENTS) == []
    async with EarpieceClient.connect(gateway.address) as client:
        one_by_one = [e.seq async for e in client.read_events(session_id, after_seq=10, limit=3)]
    assert one_by_one == [11, 12, 13]


async def test_a_session_with_no_events_sends_no_page(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, store: EventStore
) -> None:
    session_id = f"read-empty-{uuid.uuid4().hex[:8]}"
    await store.create_session(session_id=session_id, tenant_id="acme", config={}, prompt_hash=None)
    assert await _pages(replay, session_id) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _pages(replay, f"read-none-{uuid.uuid4().hex[:8]}")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

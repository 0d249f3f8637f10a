"""Postgres faults through the real gateway: a restart (`pg_ctl stop -m fast`, then start) under
many live sessions is a transient fault. No writer stops, every acknowledged event is in
Postgres afterwards with the seq its Ack named, StartSession during the outage is UNAVAILABLE
with a message a person can act on, and an outage longer than the writer's buffer ends the
session cleanly, telling the client, without losing what was acknowledged."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import grpc
import pytest

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway import session_service
from services.store import writer as writer_module
from tests.hostile.helpers import TENANT, RawStream, screen, start
from tests.hostile.stack import Stack

SESSIONS = 24


def acked(stream: RawStream) -> dict[str, int]:
    """client_event_id -> seq of every message the gateway acknowledged as recorded."""
    return {
        r.ack.client_event_id: r.seq
        for r in stream.replies
        if r.WhichOneof("body") == "ack" and not r.ack.duplicate
    }


async def feed(stream: RawStream, stop: asyncio.Event, *, every: float = 0.05) -> int:
    """Screen state (acknowledged) and microphone audio (events and ~1 s chunks) until stopped."""
    n = 0
    while not stop.is_set() and not stream.ended.is_set():
        n += 1
        stream.send(screen(json.dumps({"n": n, "t": time.time()}), f"m-{n}"))
        stream.send(pb.ClientMessage(client_event_id=f"a-{n}", audio=pb.AudioFrame(pcm16=FRAME)))
        await asyncio.sleep(every)
    return n


FRAME = bytes(2400)  # 50 ms of 24 kHz PCM16


async def rows(url: str, session_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(
            "SELECT client_event_id, seq FROM session_events"
            " WHERE session_id = $1 AND client_event_id IS NOT NULL",
            session_id,
        )
    finally:
        await conn.close()
    return {r["client_event_id"]: r["seq"] for r in records}


async def test_a_postgres_restart_under_live_sessions_loses_nothing_acknowledged(
    stack: Stack,
) -> None:
    ids = [await start(stack.sessions) for _ in range(SESSIONS)]
    streams = [RawStream(stack.sessions, sid) for sid in ids]
    for s in streams:
        await s.attached()
    stop = asyncio.Event()
    feeders = [asyncio.create_task(feed(s, stop)) for s in streams]
    await asyncio.sleep(2.0)

    await asyncio.to_thread(stack.pg.stop_fast)
    try:
        acks_at_stop = [len(acked(s)) for s in streams]
        # StartSession meanwhile: UNAVAILABLE, saying what is wrong and what to do.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.sessions.StartSession(
                pb.StartSessionRequest(
                    tenant_id=TENANT, config=pb.SessionConfig(instructions="You are a tutor.")
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
        details = (caught.value.details() or "").lower()
        assert ("postgres" in details or "database" in details) and "retry" in details, details
        await asyncio.sleep(3.0)
        acks_in_outage = [len(acked(s)) for s in streams]
    finally:
        await asyncio.to_thread(stack.pg.start_again)

    await asyncio.sleep(3.0)
    acks_before_end = [len(acked(s)) for s in streams]
    stop.set()
    await asyncio.gather(*feeders)
    for s in streams:
        await s.close()

    # No stream died: each was closed by its client and ended OK.
    assert [s.status for s in streams] == [grpc.StatusCode.OK] * SESSIONS, [
        (s.status, s.details) for s in streams if s.status != grpc.StatusCode.OK
    ]
    # Messages kept being accepted during the outage and after it: no writer stopped.
    assert all(b > a for a, b in zip(acks_at_stop, acks_in_outage, strict=True))
    assert all(b > a for a, b in zip(acks_in_outage, acks_before_end, strict=True))
    lost = 0
    total = 0
    for sid, s in zip(ids, streams, strict=True):
        want = acked(s)
        have = await rows(stack.pg.url, sid)
        total += len(want)
        lost += sum(1 for cid, seq in want.items() if have.get(cid) != seq)
    assert total > SESSIONS * 100
    conn = await asyncpg.connect(stack.pg.url)
    try:
        for sid in ids:  # one writer per session throughout: seqs gapless from 1
            seqs = await conn.fetchval(
                "SELECT array_agg(seq ORDER BY seq) FROM session_events WHERE session_id = $1", sid
            )
            assert seqs == list(range(1, len(seqs) + 1)), sid
    finally:
        await conn.close()
    assert lost == 0, f"{lost} of {total} acknowledged events are not in Postgres"
    print(f"\n{SESSIONS} sessions, {total} acknowledged events, {lost} lost across the restart")


async def test_an_outage_past_the_buffer_ends_the_session_and_keeps_what_was_acked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "BUFFER_SECONDS", 2.0)
    monkeypatch.setattr(session_service, "STORE_OUTAGE_END_WAIT", 3.0)
    session_id = await start(stack.sessions)
    stream = RawStream(stack.sessions, session_id)
    await stream.attached()
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(stream, stop))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(stack.pg.stop_fast)
    try:
        async with asyncio.timeout(30):
            await stream.ended.wait()
    finally:
        stop.set()
        await feeder
        await asyncio.to_thread(stack.pg.start_again)
    fatal = [r.error for r in stream.replies if r.WhichOneof("body") == "error" and r.error.fatal]
    assert fatal and fatal[0].code == grpc.StatusCode.UNAVAILABLE.value[0], stream.replies[-3:]
    assert "unreachable" in fatal[0].message
    assert stream.status == grpc.StatusCode.UNAVAILABLE, (stream.status, stream.details)
    # What was acknowledged reaches Postgres once it is back (the writer drains).
    want = acked(stream)
    async with asyncio.timeout(30):
        while (have := await _rows_when_up(stack.pg.url, session_id)) is None or any(
            have.get(cid) != seq for cid, seq in want.items()
        ):
            await asyncio.sleep(0.5)
    assert len(want) > 5


async def _rows_when_up(url: str, session_id: str) -> dict[str, int] | None:
    try:
        return await rows(url, session_id)
    except (OSError, asyncpg.PostgresError):
        return None

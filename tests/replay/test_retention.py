"""Audio retention on real parts: the Temporal Schedule's run purges stored audio past the
tenant's retention as the purger role, records the purge, keeps every event, and export then
marks the audio as purged. The purger role can do nothing else."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import asyncpg
import pytest
from temporalio.client import Client

from services.gateway.server import RunningGateway
from services.replay.access import local_caller
from services.replay.service import ReplayReader
from services.replay.viewer.server import serving_viewer
from services.store.event_store import EventStore
from tests.conftest import MakeKey
from workflows.retention import RETENTION_SCHEDULE_ID, ensure_retention_schedule

FRAME = b"\x10\x00" * 480  # 20 ms of 24 kHz PCM16


async def record_small_session(store: EventStore, tenant: str) -> str:
    session_id = f"retain-{uuid.uuid4().hex[:10]}"
    await store.create_session(session_id=session_id, tenant_id=tenant, config={}, prompt_hash="h")
    writer = await store.open_writer(session_id)
    writer.append(kind="session.started", source="gateway", payload={"tenant_id": tenant})
    for _ in range(100):
        writer.append_audio(stream="input", pcm=FRAME, kind="client.audio", source="client",
                            payload={})  # fmt: skip
    await writer.close()
    await store.mark_ended(session_id=session_id, reason="test")
    return session_id


async def test_schedule_purges_audio_keeps_events_and_export_marks_it(
    gateway: RunningGateway, store: EventStore, temporal: Client, api_key: MakeKey
) -> None:
    tenant = f"retain-{uuid.uuid4().hex[:6]}"
    session_id = await record_small_session(store, tenant)
    kept = await record_small_session(store, "replay-keep")
    events_before = await store.last_seq(session_id)
    reader = ReplayReader(store)
    await reader.set_retention(tenant, 0)

    await ensure_retention_schedule(temporal)
    await ensure_retention_schedule(temporal)  # idempotent
    handle = temporal.get_schedule_handle(RETENTION_SCHEDULE_ID)
    try:
        await handle.trigger()
        async with asyncio.timeout(30):
            while not await reader.audio_purged(session_id):
                await asyncio.sleep(0.2)
    finally:
        await handle.delete()

    chunks = await store.pool.fetchval(
        "SELECT count(*) FROM audio_chunks WHERE session_id = $1", session_id
    )
    assert chunks == 0
    assert await store.last_seq(session_id) == events_before
    purge = await store.pool.fetchrow(
        "SELECT stream, bytes, run_id, retention_days FROM audio_purges WHERE session_id = $1",
        session_id,
    )
    assert purge is not None
    assert (purge["stream"], purge["bytes"], purge["retention_days"]) == ("input", 96_000, 0)
    assert purge["run_id"].startswith("earpiece-audio-retention")
    assert await store.pool.fetchval(
        "SELECT count(*) FROM audio_chunks WHERE session_id = $1", kept
    ) > 0  # fmt: skip

    record = await reader.session(local_caller(), session_id)
    assert record is not None
    _, audio = await reader.export_audio(record)
    assert [(m.channel, m.reason) for m in audio.markers] == [("user", "purged")]
    assert audio.markers[0].end_ms - audio.markers[0].start_ms >= 1990
    assert not any(audio.left)  # silence where the audio was

    # The viewer says so too: the analysis flags it, the audio's markers name it.
    key = await api_key(tenant, "analyst")
    headers = {"Authorization": f"Bearer {key}"}
    async with serving_viewer(store) as base, aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/api/sessions/{session_id}/analysis") as response:
            assert (await response.json())["audio_purged"] is True
        async with http.get(f"{base}/api/sessions/{session_id}/audio.wav") as response:
            markers = json.loads(response.headers["X-Earpiece-Markers"])
            assert len(await response.read()) == int(response.headers["Content-Length"])
    assert [m["reason"] for m in markers] == ["purged"]


async def test_purger_role_may_only_purge(pg_url: str, store: EventStore) -> None:
    session_id = await record_small_session(store, "replay-keep")
    conn = await asyncpg.connect(pg_url)
    try:
        for statement in (
            f"DELETE FROM session_events WHERE session_id = '{session_id}'",
            f"SELECT payload FROM session_events WHERE session_id = '{session_id}'",
            f"UPDATE sessions SET status = 'active' WHERE session_id = '{session_id}'",
            "DELETE FROM audio_purges",
            "DELETE FROM replay_audit",
        ):
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE earpiece_purger")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
    finally:
        await conn.close()


async def test_audio_lost_in_a_crash_is_marked_missing(store: EventStore, pg_url: str) -> None:
    session_id = await record_small_session(store, "replay-keep")
    conn = await asyncpg.connect(pg_url)  # as the owner: a chunk that never reached the disk
    try:
        await conn.execute(
            "DELETE FROM audio_chunks WHERE session_id = $1 AND start_offset = 0", session_id
        )
    finally:
        await conn.close()
    reader = ReplayReader(store)
    record = await reader.session(local_caller(), session_id)
    assert record is not None
    _, audio = await reader.export_audio(record)
    [marker] = audio.markers
    assert (marker.channel, marker.reason, marker.start_ms) == ("user", "missing", 0)
    assert 990 <= marker.end_ms - marker.start_ms <= 1010  # the first ~1 s chunk
    assert any(audio.left)  # the second second is still there

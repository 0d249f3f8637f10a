"""Audio: gathered into ~1 s chunks, read back byte-exact with every frame's boundary and time."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from services.store import AudioRef, AudioStream, EventStore
from services.store import writer as writer_module
from services.store.events import AUDIO_STREAMS
from tests.store.conftest import new_id


async def test_round_trip_is_byte_exact_with_frames_and_times(
    store: EventStore, pg_url: str
) -> None:
    session_id = new_id("audio")
    rng = random.Random(7)
    writer = await store.open_writer(session_id)
    sent: dict[str, list[bytes]] = {"input": [], "output": []}
    seqs: dict[str, list[int]] = {"input": [], "output": []}
    for i in range(260):  # ~5 s of input, crossing chunk boundaries mid-frame
        stream: AudioStream = "input" if i % 3 else "output"
        size = 960 if i % 5 else rng.choice([2, 480, 1918, 4800])
        pcm = rng.randbytes(size)
        sent[stream].append(pcm)
        seqs[stream].append(
            writer.append_audio(
                stream=stream,
                pcm=pcm,
                kind="client.audio" if stream == "input" else "model.audio",
                source="client" if stream == "input" else "model",
                payload={"i": i},
                client_event_id=f"a-{i}" if stream == "input" else None,
            )
        )
        if i % 20 == 0:
            await asyncio.sleep(0)
    writer.append(kind="not.audio", source="test", payload={})
    await writer.close()

    events = {e.seq: e async for e in store.read_events(session_id)}
    for stream in AUDIO_STREAMS:
        frames = [f async for f in store.read_audio(session_id, stream=stream)]
        assert [f.data for f in frames] == sent[stream]
        offset = 0
        for frame, seq in zip(frames, seqs[stream], strict=True):
            event = events[seq]
            assert frame.offset == offset
            assert event.audio == AudioRef(stream, offset, len(frame.data))
            assert event.payload["audio"] == {
                "stream": stream,
                "offset": offset,
                "length": len(frame.data),
            }
            assert frame.received_at == event.receive_time
            offset += len(frame.data)
        whole = await store.read_audio_bytes(session_id, stream=stream)
        assert whole == b"".join(sent[stream])
    assert events[max(events)].audio is None

    conn = await asyncpg.connect(pg_url)
    try:
        chunks = await conn.fetch(
            "SELECT octet_length(data) AS n, cardinality(frame_offsets) AS frames"
            " FROM audio_chunks WHERE session_id = $1 AND stream = 'input' ORDER BY start_offset",
            session_id,
        )
        storage = await conn.fetchval(
            "SELECT attstorage::text FROM pg_attribute"
            " WHERE attrelid = 'audio_chunks'::regclass AND attname = 'data'"
        )
    finally:
        await conn.close()
    assert storage == "e"  # EXTERNAL: no futile compression of PCM
    total = sum(len(p) for p in sent["input"])
    # Chunks close at ~1 s (48,000 bytes): all but the last reach it, none carries much more.
    assert len(chunks) == pytest.approx(total / writer_module.CHUNK_BYTES, abs=1)
    assert all(c["n"] >= writer_module.CHUNK_BYTES for c in chunks[:-1])
    assert all(c["n"] < writer_module.CHUNK_BYTES + 4800 for c in chunks)
    assert sum(c["frames"] for c in chunks) == len(sent["input"])


async def test_an_old_partial_chunk_is_written_without_a_flush(
    store: EventStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "CHUNK_MAX_AGE", 0.1)
    session_id = new_id("aged")
    writer = await store.open_writer(session_id)
    writer.append_audio(stream="input", pcm=b"\1\0" * 480, kind="a", source="s", payload={})
    conn = await asyncpg.connect(pg_url)
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            n = await conn.fetchval(
                "SELECT count(*) FROM audio_chunks WHERE session_id = $1", session_id
            )
            if n:
                break
        assert n == 1
    finally:
        await conn.close()
    await writer.close()


async def test_resumed_writer_never_reuses_an_offset(store: EventStore, pg_url: str) -> None:
    session_id = new_id("resume")
    writer = await store.open_writer(session_id)
    writer.append_audio(stream="input", pcm=b"\1" * 960, kind="a", source="s", payload={})
    await writer.close()
    # A crash after the event was durable but before its chunk was: the event refers to bytes
    # 960..1920 that were never written.
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO session_events (session_id, seq, event_id, kind, source, receive_time,"
            " audio_stream, audio_offset, audio_length, payload)"
            " VALUES ($1, 2, 'lost', 'a', 's', now(), 'input', 960, 960, '{}')",
            session_id,
        )
    finally:
        await conn.close()

    resumed = await store.open_writer(session_id)
    seq = resumed.append_audio(stream="input", pcm=b"\2" * 960, kind="a", source="s", payload={})
    out = resumed.append_audio(stream="output", pcm=b"\3" * 4, kind="a", source="s", payload={})
    await resumed.close()
    events = {e.seq: e async for e in store.read_events(session_id)}
    assert events[seq].audio == AudioRef("input", 1920, 960)
    assert events[out].audio == AudioRef("output", 0, 4)
    audio = await store.read_audio_bytes(session_id, stream="input")
    assert audio == b"\1" * 960 + b"\0" * 960 + b"\2" * 960  # the hole is silence
    assert [f.offset async for f in store.read_audio(session_id, stream="input")] == [0, 1920]


async def test_bad_audio_arguments(store: EventStore) -> None:
    writer = await store.open_writer(new_id("badaudio"))
    with pytest.raises(ValueError, match="stream"):
        writer.append_audio(stream="mic", pcm=b"\0\0", kind="a", source="s", payload={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audio"):
        writer.append_audio(stream="input", pcm=b"\0\0", kind="a", source="s", payload={"audio": 1})
    assert writer.last_seq == 0
    await writer.close()

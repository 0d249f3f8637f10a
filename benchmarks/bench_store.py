"""The event store's append throughput next to raw asyncpg COPY of the same rows, same run.

Two workloads, each measured both ways, alternating, in ROUNDS paired rounds:

- audio: N 960-byte frames (20 ms of 24 kHz PCM16). Raw: one row per frame, COPY in batches of
  1,000 (one transaction each) into a scratch table. Store: `append_audio` of each frame on one
  session's writer (an event row per frame plus ~1 s audio chunks), timed until `close()`.
- events: N small JSON events. Raw: COPY of ready-made rows into a scratch copy of
  session_events. Store: `append` of the same payloads (as dicts) on one writer, until `close()`.

The raw side is given its rows ready-built and pays only for COPY; the store pays for building
them (seq, ids, times, JSON encoding) as well, on the same single Python thread. Goal: the
store at >= 0.8 of raw COPY.

Runs on a throwaway embedded Postgres in a temp folder, or, with DATABASE_URL set, in a scratch
database created (and dropped) on that server, so no real event log is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.runtime.postgres import EmbeddedPostgres
from services.store import EventStore
from services.store.migrations import apply_migrations

N_AUDIO = 60_000  # 20 minutes of one direction's audio
N_EVENTS = 100_000
ROUNDS = 5
RAW_BATCH = 1_000
YIELD_EVERY = 50  # the producer yields to the loop like a gateway reading a stream would
GOAL = 0.8

FRAME = os.urandom(960)  # 20 ms of 24 kHz PCM16; random, so as incompressible as speech
EVENT_PAYLOAD = {"type": "response.output_audio_transcript.delta", "delta": "Hello there"}

_RAW_FRAMES = """
CREATE TABLE IF NOT EXISTS bench_raw_frames (
    session_id   text NOT NULL,
    stream       text NOT NULL,
    frame_offset bigint NOT NULL,
    receive_time timestamptz NOT NULL,
    data         bytea NOT NULL,
    PRIMARY KEY (session_id, stream, frame_offset)
)
"""
_RAW_EVENTS = """
CREATE TABLE IF NOT EXISTS bench_raw_events (LIKE session_events INCLUDING ALL)
"""
_EVENT_COLUMNS = (
    "session_id",
    "seq",
    "event_id",
    "kind",
    "source",
    "producer_time",
    "receive_time",
    "client_event_id",
    "audio_stream",
    "audio_offset",
    "audio_length",
    "payload",
)


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A database to spoil: embedded in a temp dir, or a scratch one on DATABASE_URL's server."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        with tempfile.TemporaryDirectory(prefix="earpiece-bench-") as tmp:
            embedded = EmbeddedPostgres(data_dir=Path(tmp) / "pg")
            started = await asyncio.to_thread(embedded.start)
            try:
                yield started
            finally:
                await asyncio.to_thread(embedded.stop)
        return
    name = f"earpiece_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def raw_copy(
    conn: asyncpg.Connection, table: str, records: list[tuple], columns: tuple
) -> None:
    for start in range(0, len(records), RAW_BATCH):
        async with conn.transaction():
            await conn.copy_records_to_table(
                table, records=records[start : start + RAW_BATCH], columns=columns
            )


async def raw_audio(conn: asyncpg.Connection) -> float:
    session_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    records = [(session_id, "input", i * len(FRAME), now, FRAME) for i in range(N_AUDIO)]
    started = time.perf_counter()
    await raw_copy(
        conn,
        "bench_raw_frames",
        records,
        ("session_id", "stream", "frame_offset", "receive_time", "data"),
    )
    return time.perf_counter() - started


async def raw_events(conn: asyncpg.Connection) -> float:
    session_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    records = [
        (
            session_id,
            i + 1,
            str(uuid.uuid4()),
            "model.server.response.output_audio_transcript.delta",
            "model",
            None,
            now,
            None,
            None,
            None,
            None,
            json.dumps({**EVENT_PAYLOAD, "i": i}, separators=(",", ":")),
        )
        for i in range(N_EVENTS)
    ]
    started = time.perf_counter()
    await raw_copy(conn, "bench_raw_events", records, _EVENT_COLUMNS)
    return time.perf_counter() - started


async def store_audio(store: EventStore) -> float:
    writer = await store.open_writer(f"bench-audio-{uuid.uuid4().hex}")
    append = writer.append_audio
    started = time.perf_counter()
    for i in range(N_AUDIO):
        append(stream="input", pcm=FRAME, kind="client.audio", source="client", payload={})
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    await writer.close()
    return time.perf_counter() - started


async def store_events(store: EventStore) -> float:
    writer = await store.open_writer(f"bench-events-{uuid.uuid4().hex}")
    append = writer.append
    kind = "model.server.response.output_audio_transcript.delta"
    started = time.perf_counter()
    for i in range(N_EVENTS):
        append(kind=kind, source="model", payload={**EVENT_PAYLOAD, "i": i})
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    await writer.close()
    return time.perf_counter() - started


async def checkpoint(conn: asyncpg.Connection) -> None:
    """Starts each measurement with no checkpoint pending, so none lands in the middle."""
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # not ours to force: go on
        await conn.execute("CHECKPOINT")


async def compare(
    conn: asyncpg.Connection,
    n: int,
    raw: Callable[[], Awaitable[float]],
    store: Callable[[], Awaitable[float]],
) -> tuple[float, float, float]:
    """Runs raw and store alternately (swapping who goes first) ROUNDS times.

    Returns the median raw rate, the median store rate (rows/s) and the median of the
    per-round ratios: pairing runs made seconds apart cancels most of the drift of a shared
    machine, which a ratio of medians would not."""
    raw_rates: list[float] = []
    store_rates: list[float] = []
    for round_ in range(ROUNDS):
        order = [(raw, raw_rates), (store, store_rates)]
        for run, rates in order if round_ % 2 == 0 else order[::-1]:
            await checkpoint(conn)
            rates.append(n / await run())
    ratios = [s / r for s, r in zip(store_rates, raw_rates, strict=True)]
    return statistics.median(raw_rates), statistics.median(store_rates), statistics.median(ratios)


async def main() -> None:
    async with database() as url:
        await apply_migrations(url)
        conn = await asyncpg.connect(url)
        store = await EventStore.open(url)
        try:
            await conn.execute(_RAW_FRAMES)
            await conn.execute(_RAW_EVENTS)
            audio = await compare(
                conn, N_AUDIO, lambda: raw_audio(conn), lambda: store_audio(store)
            )
            events = await compare(
                conn, N_EVENTS, lambda: raw_events(conn), lambda: store_events(store)
            )
        finally:
            await store.close()
            await conn.close()
    print(
        f"event store append vs raw asyncpg copy_records_to_table "
        f"(raw: {RAW_BATCH:,} rows per COPY and transaction, rows built in advance); "
        f"medians of {ROUNDS} paired rounds"
    )
    print(f"{'workload':<34} {'raw COPY/s':>11} {'store/s':>11} {'store/raw':>10}   goal >= {GOAL}")
    for label, (raw, stored, ratio) in [
        (f"audio frames, 960 B (N={N_AUDIO:,})", audio),
        (f"small JSON events (N={N_EVENTS:,})", events),
    ]:
        verdict = "meets goal" if ratio >= GOAL else "BELOW GOAL"
        print(f"{label:<34} {raw:>11,.0f} {stored:>11,.0f} {ratio:>10.2f}   {verdict}")

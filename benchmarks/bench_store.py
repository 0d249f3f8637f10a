"""The event store's append throughput next to raw asyncpg COPY of the same rows, same run.

Two workloads, each measured both ways, alternating, in ROUNDS rounds:

- audio: N 960-byte frames (20 ms of 24 kHz PCM16). Raw: one row per frame, COPY in batches of
  1,000 (one transaction each) into a scratch table. Store: `append_audio` of each frame on one
  session's writer (an event row per frame plus ~1 s audio chunks), timed until `close()`.
- events: N small JSON events. Raw: COPY of ready-made rows into a scratch copy of
  session_events. Store: `append` of the same payloads (as dicts) on one writer, until `close()`.

The raw side is given its rows ready-built and pays only for COPY; the store pays for building
them (seq, ids, times, JSON encoding) as well, on the same single Python thread. Raw COPY runs
at 1,000 rows per COPY and transaction (the figure in notes/temporal-and-postgres.md) and, for
reference, at 10,000: the store's own flushes carry whatever piled up since the last one
(thousands of rows under this load), and it writes audio chunks on a second connection while
events go on the first. Goal: the store at >= 0.8 of raw COPY.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.runtime.postgres import EmbeddedPostgres
from services.store import EventStore
from services.store.flusher import EVENT_COLUMNS
from services.store.migrations import apply_migrations

N_AUDIO = 60_000  # 20 minutes of one direction's audio
N_EVENTS = 100_000
ROUNDS = 5
RAW_BATCH = 1_000  # as measured in notes/temporal-and-postgres.md
RAW_BATCH_LARGE = 10_000  # about what the store's flushes carry under this load
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
_EVENT_COLUMNS = EVENT_COLUMNS  # the raw baseline writes the same columns as the store


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
    conn: asyncpg.Connection, table: str, records: list[tuple], columns: tuple, batch: int
) -> None:
    for start in range(0, len(records), batch):
        async with conn.transaction():
            await conn.copy_records_to_table(
                table, records=records[start : start + batch], columns=columns
            )


async def raw_audio(conn: asyncpg.Connection, batch: int) -> float:
    session_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    records = [(session_id, "input", i * len(FRAME), now, FRAME) for i in range(N_AUDIO)]
    started = time.perf_counter()
    await raw_copy(
        conn,
        "bench_raw_frames",
        records,
        ("session_id", "stream", "frame_offset", "receive_time", "data"),
        batch,
    )
    return time.perf_counter() - started


async def raw_events(conn: asyncpg.Connection, batch: int) -> float:
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
    await raw_copy(conn, "bench_raw_events", records, _EVENT_COLUMNS, batch)
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


@dataclass(frozen=True)
class Result:
    raw: float  # rows/s, RAW_BATCH rows per COPY
    raw_large: float  # rows/s, RAW_BATCH_LARGE rows per COPY
    store: float  # rows/s
    ratio: float  # median of per-round store/raw
    ratio_large: float  # median of per-round store/raw_large


async def compare(
    conn: asyncpg.Connection,
    n: int,
    raw: Callable[[int], Awaitable[float]],
    store: Callable[[], Awaitable[float]],
) -> Result:
    """Runs raw COPY (two batch sizes) and the store in turn, rotating who goes first, ROUNDS
    times. Ratios are the median of per-round ratios: pairing runs made seconds apart cancels
    most of the drift of a shared machine, which a ratio of medians would not."""
    contenders: list[Callable[[], Awaitable[float]]] = [
        lambda: raw(RAW_BATCH),
        lambda: raw(RAW_BATCH_LARGE),
        store,
    ]
    rates: list[list[float]] = [[] for _ in contenders]
    for round_ in range(ROUNDS):
        for k in range(len(contenders)):
            i = (k + round_) % len(contenders)
            await checkpoint(conn)
            rates[i].append(n / await contenders[i]())
    small, large, stored = rates
    return Result(
        raw=statistics.median(small),
        raw_large=statistics.median(large),
        store=statistics.median(stored),
        ratio=statistics.median(s / r for s, r in zip(stored, small, strict=True)),
        ratio_large=statistics.median(s / r for s, r in zip(stored, large, strict=True)),
    )


async def main() -> None:
    async with database() as url:
        await apply_migrations(url)
        conn = await asyncpg.connect(url)
        store = await EventStore.open(url)
        try:
            await conn.execute(_RAW_FRAMES)
            await conn.execute(_RAW_EVENTS)
            audio = await compare(
                conn, N_AUDIO, lambda b: raw_audio(conn, b), lambda: store_audio(store)
            )
            events = await compare(
                conn, N_EVENTS, lambda b: raw_events(conn, b), lambda: store_events(store)
            )
        finally:
            await store.close()
            await conn.close()
    print(
        "event store append vs raw asyncpg copy_records_to_table of the same rows "
        f"(raw rows built in advance); medians of {ROUNDS} rounds"
    )
    print(
        f"{'workload':<34} {'raw 1k/COPY':>12} {'raw 10k/COPY':>13} {'store':>10}"
        f" {'store/raw1k':>12} {'store/raw10k':>13}   goal: store/raw1k >= {GOAL}"
    )
    for label, r in [
        (f"audio frames, 960 B (N={N_AUDIO:,})", audio),
        (f"small JSON events (N={N_EVENTS:,})", events),
    ]:
        verdict = "meets goal" if r.ratio >= GOAL else "BELOW GOAL"
        print(
            f"{label:<34} {r.raw:>10,.0f}/s {r.raw_large:>11,.0f}/s {r.store:>8,.0f}/s"
            f" {r.ratio:>12.2f} {r.ratio_large:>13.2f}   {verdict}"
        )

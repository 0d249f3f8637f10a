"""`ReplayService.ReadEvents` over real gRPC next to a raw asyncpg read of the same rows, same run.

The session is the replay benchmark's synthetic one (`bench_replay.hour_of_events`), cut to about
14 minutes: ~88,000 events, nine in ten of them audio-frame rows (`client.audio` and its
`input_audio_buffer.append` mirror, the assistant's `output_audio.delta`), written with COPY as
the writers' role. Its audio chunks are left out: ReadEvents never reads them.

- ReadEvents: a gateway on a loopback port (`running_gateway`, the auth and error interceptors,
  the embedded Postgres and Temporal), read with the client library's `read_events`, which
  iterates the events one by one, every event counted.
- Raw: the same rows, every column, fetched in keyset pages of 5,000 through the store's pool
  (`bench_replay.raw_read`), rows dropped.

Alternating, ROUNDS rounds, medians. Goal (issue 14): ReadEvents at most 3x the raw read.
"""

from __future__ import annotations

import statistics
import time

import asyncpg

from benchmarks.bench_replay import COLUMNS, T0, hour_of_events, raw_read
from benchmarks.common import throwaway_settings
from services.client import EarpieceClient, default_api_key
from services.gateway.server import running_gateway
from services.runtime.app import infrastructure
from services.store.pool import WRITER_ROLE, use_role

SECONDS = 840  # 14 minutes: ~88k events, the size of the session in issue 14
ROUNDS = 3
GOAL = 3.0


async def write_session(url: str, session_id: str) -> int:
    """COPYs the session's events as the writers' role (COPY into a table with row-level
    security is refused to a role subject to it); returns how many."""
    events, _chunks = hour_of_events(session_id, seconds=SECONDS)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET earpiece.tenant_id = '*'")
        await conn.execute(
            "INSERT INTO sessions (session_id, tenant_id, status, config, prompt_hash, created_at)"
            " VALUES ($1, 'bench', 'ended', '{}', 'ab', $2)",
            session_id,
            T0,
        )
        if not await use_role(conn, WRITER_ROLE):
            raise RuntimeError(f"cannot write events as {WRITER_ROLE}")
        await conn.copy_records_to_table("session_events", records=events, columns=COLUMNS)
        await conn.execute("ANALYZE session_events")
    finally:
        await conn.close()
    return len(events)


async def main() -> None:
    session_id = "bench-read-events"
    with throwaway_settings() as settings:
        async with infrastructure(settings, temporal_port=None) as infra:
            count = await write_session(infra.database_url, session_id)
            print(f"session: {count:,} events ({SECONDS // 60} minutes, mostly audio frames)")
            async with (
                running_gateway(
                    store=infra.store, client=infra.client, address="127.0.0.1:0"
                ) as gw,
                EarpieceClient.connect(
                    gw.address, api_key=default_api_key(settings.state_dir)
                ) as api,
            ):
                raw_s, grpc_s = [], []
                for _ in range(ROUNDS):
                    seconds, rows = await raw_read(infra.store.pool, session_id)
                    assert rows == count, rows
                    raw_s.append(seconds)
                    started = time.perf_counter()
                    read = 0
                    async for _event in api.read_events(session_id):
                        read += 1
                    grpc_s.append(time.perf_counter() - started)
                    assert read == count, read
    raw, served = statistics.median(raw_s), statistics.median(grpc_s)
    ratio = served / raw
    print(
        f"raw asyncpg read of the rows: {raw:6.2f} s  ({count / raw:,.0f} rows/s)\n"
        f"ReadEvents over gRPC:         {served:6.2f} s  ({count / served:,.0f} events/s)"
        f"  = {ratio:.2f}x the raw read (goal <= {GOAL:.0f}x): "
        f"{'met' if ratio <= GOAL else 'MISSED'}"
    )
    print(f"medians of {ROUNDS} rounds, alternating raw and ReadEvents")

"""Reads: one session's events by keyset on seq, the global catch-up log, and audio.

Every read pages by keyset and takes a pool connection per page only, so a long session is
never held in memory and a slow consumer never pins a connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from services.store.events import START, AudioFrame, AudioRef, AudioStream, Position, StoredEvent

_EVENT_COLUMNS = (
    "session_id, seq, event_id, kind, source, producer_time, receive_time, tx, position,"
    " client_event_id, audio_stream, audio_offset, audio_length, payload"
)

_SESSION_PAGE = f"""
SELECT {_EVENT_COLUMNS} FROM session_events
WHERE session_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3
"""

# What an API `Event` carries and nothing else, times as integer microseconds since the Unix
# epoch (exact: extract gives numeric): a datetime per time per row, and its conversion back to
# seconds and nanos, cost more than the rest of the row.
_API_PAGE = """
SELECT seq, event_id, kind, source,
       (extract(epoch FROM producer_time) * 1000000)::int8,
       (extract(epoch FROM receive_time) * 1000000)::int8,
       position, payload
FROM session_events
WHERE session_id = $1 AND seq > $2
ORDER BY seq
LIMIT $3
"""

# Only transactions older than every running one: rows below that xmin can no longer appear,
# so a consumer that advances its position never passes an event still to commit.
_GLOBAL_PAGE = f"""
SELECT {_EVENT_COLUMNS} FROM session_events
WHERE (tx, position) > ($1::text::xid8, $2)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx, position
LIMIT $3
"""

_AUDIO_PAGE = """
SELECT start_offset, data, frame_offsets, frame_times FROM audio_chunks
WHERE session_id = $1 AND stream = $2 AND start_offset >= $3
ORDER BY start_offset
LIMIT $4
"""

_AUDIO_PAGE_CHUNKS = 32  # ~32 s of audio, ~1.5 MB per round trip


def _event(row: asyncpg.Record) -> StoredEvent:
    stream = row[10]
    return StoredEvent(
        session_id=row[0],
        seq=row[1],
        event_id=row[2],
        kind=row[3],
        source=row[4],
        producer_time=row[5],
        receive_time=row[6],
        tx=int(row[7]),
        position=row[8],
        client_event_id=row[9],
        audio=None if stream is None else AudioRef(stream, row[11], row[12]),
        payload_json=row[13],
    )


async def _session_pages(
    pool: asyncpg.Pool,
    query: str,
    session_id: str,
    *,
    after_seq: int,
    limit: int,
    batch_size: int,
    seq_column: int,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Keyset pages of `query` (parameters: session, seq after, row limit), never empty, at
    most `limit` rows in all (0: no limit)."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    if limit < 0:
        raise ValueError("limit must not be negative")
    last, left = after_seq, limit
    while True:
        size = min(batch_size, left) if limit else batch_size
        rows = await pool.fetch(query, session_id, last, size)
        if rows:
            yield rows
        if len(rows) < size:
            return
        if limit:
            left -= len(rows)
            if left == 0:
                return
        last = rows[-1][seq_column]


async def read_events(
    pool: asyncpg.Pool, session_id: str, *, after_seq: int = 0, batch_size: int = 1000
) -> AsyncIterator[StoredEvent]:
    """A session's events with seq > after_seq, in seq order, `batch_size` rows per query."""
    pages = _session_pages(
        pool,
        _SESSION_PAGE,
        session_id,
        after_seq=after_seq,
        limit=0,
        batch_size=batch_size,
        seq_column=1,
    )
    async for rows in pages:
        for row in rows:
            yield _event(row)


async def read_api_rows(
    pool: asyncpg.Pool,
    session_id: str,
    *,
    after_seq: int = 0,
    limit: int = 0,
    batch_size: int = 1000,
) -> AsyncIterator[list[asyncpg.Record]]:
    """ReadEvents' read: pages of rows (seq, event_id, kind, source, producer_us, receive_us,
    position, payload) with seq > after_seq, at most `limit` rows (0: all). Raw rows, not
    StoredEvents: a Python object per row is what made ReadEvents slow (issue 14)."""
    async for rows in _session_pages(
        pool,
        _API_PAGE,
        session_id,
        after_seq=after_seq,
        limit=limit,
        batch_size=batch_size,
        seq_column=0,
    ):
        yield rows


async def read_all(pool: asyncpg.Pool, *, after: Position | None, limit: int) -> list[StoredEvent]:
    """Up to `limit` events of all sessions after `after`, ordered by (tx, position), stopping
    short of any transaction still running. Pass the last event's `global_position` as `after`
    to continue; an empty list means "caught up for now", not "the end"."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    start = after or START
    rows = await pool.fetch(_GLOBAL_PAGE, str(start.tx), start.position, limit)
    return [_event(row) for row in rows]


async def _audio_pages(
    pool: asyncpg.Pool, session_id: str, stream: AudioStream
) -> AsyncIterator[list[asyncpg.Record]]:
    next_offset = 0
    while True:
        rows = await pool.fetch(_AUDIO_PAGE, session_id, stream, next_offset, _AUDIO_PAGE_CHUNKS)
        if rows:
            yield rows
        if len(rows) < _AUDIO_PAGE_CHUNKS:
            return
        next_offset = rows[-1][0] + 1


async def read_audio(
    pool: asyncpg.Pool, session_id: str, *, stream: AudioStream
) -> AsyncIterator[AudioFrame]:
    """Every recorded frame of one stream in order: its stream offset, when it was received,
    and its bytes exactly as appended."""
    async for rows in _audio_pages(pool, session_id, stream):
        for start, data, frame_offsets, frame_times in rows:
            view = memoryview(data)
            ends: list[Any] = [*frame_offsets[1:], len(data)]
            for begin, end, received_at in zip(frame_offsets, ends, frame_times, strict=True):
                yield AudioFrame(
                    offset=start + begin, received_at=received_at, data=bytes(view[begin:end])
                )


async def read_audio_bytes(pool: asyncpg.Pool, session_id: str, *, stream: AudioStream) -> bytes:
    """One stream's audio as a single byte string, byte i being stream offset i. A hole (audio
    lost in a crash before its chunk was written) is filled with zero bytes, which is PCM16
    silence, so offsets in events still line up with the bytes."""
    parts: list[bytes] = []
    position = 0
    async for rows in _audio_pages(pool, session_id, stream):
        for start, data, _, _ in rows:
            if start > position:
                parts.append(bytes(start - position))
            parts.append(data)
            position = start + len(data)
    return b"".join(parts)

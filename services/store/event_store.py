"""The event store's one entry point: sessions, per-session writers, and reads, over one pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg

from services.store import reader, sessions
from services.store.events import (
    AUDIO_STREAMS,
    AudioFrame,
    AudioStream,
    Position,
    SessionRecord,
    SessionStatus,
    StoredEvent,
)
from services.store.flusher import Flusher
from services.store.pool import WRITER_ROLE, create_pool
from services.store.writer import FLUSH_INTERVAL, ClientIdIndex, SessionWriter, WriterClosed

log = logging.getLogger(__name__)

_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM session_events WHERE session_id = $1"

# Every client id of the session, oldest first, read in pages into a bounded index.
_CLIENT_IDS = """
SELECT client_event_id, seq FROM session_events
WHERE session_id = $1 AND client_event_id IS NOT NULL ORDER BY seq
"""

DRAIN_WAIT = 5.0
"""Seconds a re-attach waits for the session's previous writer to finish writing."""

# Where a new writer's audio starts on a stream: after the last chunk written, and after every
# offset an event refers to (its chunk may have been lost in a crash), so no offset is reused.
_AUDIO_END = """
SELECT greatest(
    (SELECT start_offset + octet_length(data) FROM audio_chunks
     WHERE session_id = $1 AND stream = $2 ORDER BY start_offset DESC LIMIT 1),
    (SELECT audio_offset + audio_length FROM session_events
     WHERE session_id = $1 AND audio_stream = $2 ORDER BY seq DESC LIMIT 1),
    0)
"""


class EventStore:
    """Sessions, the append-only event log, and audio, in Postgres.

    Open one per process (`await EventStore.open(url)`) and share it; `close()` flushes and
    closes every writer still open, then the pool."""

    def __init__(self, pool: asyncpg.Pool, *, writer_pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        # The writers' COPYs run as WRITER_ROLE (row-level security refuses COPY otherwise).
        self._writer_pool = writer_pool or pool
        self._writers: dict[str, SessionWriter] = {}
        # One background task writes every session's queue: one COPY per tick, not per session.
        self._flusher = Flusher(self._writer_pool, interval=FLUSH_INTERVAL)
        self._opening: dict[str, asyncio.Task[SessionWriter]] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (application role), for tables beside the event log."""
        return self._pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> EventStore:
        """Connects a pool whose connections run as the application role where possible, and
        one for the event writers' COPYs."""
        pool = await create_pool(url, min_size=min_size, max_size=max_size)
        try:
            writers = await create_pool(
                url, min_size=min(1, min_size), max_size=max_size, role=WRITER_ROLE, scoped=False
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, writer_pool=writers)

    async def close(self) -> None:
        """Closes (flushes) every writer still open, then the pool; a writer that fails to
        flush is logged, not raised, so the pool is always closed."""
        for writer in list(self._writers.values()):
            try:
                await writer.close()
            except Exception:
                log.exception("closing the writer for session %s failed", writer.session_id)
        await self._flusher.close()
        if self._writer_pool is not self._pool:
            await self._writer_pool.close()
        await self._pool.close()

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        session_id: str,
        tenant_id: str,
        config: dict[str, Any],
        prompt_hash: str | None,
    ) -> SessionRecord:
        """Creates an active session, or returns the existing one with created=False."""
        return await sessions.create_session(
            self._pool,
            session_id=session_id,
            tenant_id=tenant_id,
            config=config,
            prompt_hash=prompt_hash,
        )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await sessions.get_session(self._pool, session_id)

    async def list_sessions(
        self,
        *,
        tenant_id: str | None = None,
        status: SessionStatus | None = None,
        page_size: int = 100,
        after: tuple[datetime, str] | None = None,
        newest_first: bool = False,
    ) -> list[SessionRecord]:
        """A page ordered by (created_at, session_id); continue with `after=last.cursor`."""
        return await sessions.list_sessions(
            self._pool,
            tenant_id=tenant_id,
            status=status,
            page_size=page_size,
            after=after,
            newest_first=newest_first,
        )

    async def mark_ended(self, *, session_id: str, reason: str) -> SessionRecord | None:
        """Ends the session (idempotent); None if it does not exist."""
        return await sessions.mark_ended(self._pool, session_id=session_id, reason=reason)

    # -- writing ------------------------------------------------------------------------------

    async def open_writer(
        self, session_id: str, *, flush_interval: float = FLUSH_INTERVAL
    ) -> SessionWriter:
        """The session's writer in this process, resuming after the last recorded event.

        If this store already has a live writer for the session it is returned (one writer per
        session per process). A writer in another process is only detected at its first
        conflicting flush, which stops the later one with WriterConflict."""
        existing = self._writers.get(session_id)
        if existing is not None and existing.closing:
            # A writer closed while Postgres was unreachable still holds events; a new one
            # may only start after them.
            try:
                async with asyncio.timeout(DRAIN_WAIT):
                    await existing.drained()
            except TimeoutError:
                raise WriterClosed(
                    f"session {session_id}: the previous connection's events are still being "
                    f"written ({existing.pending_events} held, the event store unreachable for "
                    f"{existing.failing_for:.0f}s); retry in a few seconds"
                ) from None
            existing = self._writers.get(session_id)
        if existing is not None:
            return existing
        opening = self._opening.get(session_id)
        if opening is None:
            opening = asyncio.create_task(self._new_writer(session_id, flush_interval))
            self._opening[session_id] = opening
            opening.add_done_callback(lambda _: self._opening.pop(session_id, None))
        return await asyncio.shield(opening)

    async def _new_writer(self, session_id: str, flush_interval: float) -> SessionWriter:
        index = ClientIdIndex()
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            last_seq = int(await conn.fetchval(_LAST_SEQ, session_id))
            async for row in conn.cursor(_CLIENT_IDS, session_id, prefetch=2000):
                index.add(row[0], row[1], durable_seq=last_seq)
            audio_ends: dict[AudioStream, int] = {}
            for stream in AUDIO_STREAMS:
                audio_ends[stream] = await conn.fetchval(_AUDIO_END, session_id, stream)
        writer = SessionWriter(
            pool=self._writer_pool,
            session_id=session_id,
            last_seq=last_seq,
            seen=index,
            audio_ends=audio_ends,
            flush_interval=flush_interval,
            on_release=self._release,
            flusher=self._flusher,
        )
        self._writers[session_id] = writer
        return writer

    def _release(self, writer: SessionWriter) -> None:
        if self._writers.get(writer.session_id) is writer:
            del self._writers[writer.session_id]

    # -- reading ------------------------------------------------------------------------------

    def read_events(
        self, session_id: str, *, after_seq: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[StoredEvent]:
        """The session's events after `after_seq`, in seq order, streamed page by page."""
        return reader.read_events(
            self._pool, session_id, after_seq=after_seq, batch_size=batch_size
        )

    def read_event_rows(
        self, session_id: str, *, after_seq: int = 0, limit: int = 0
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """The same events as raw row pages, for the API's ReadEvents (`reader.read_api_rows`:
        no Python object per event, which is what made ReadEvents slow)."""
        return reader.read_api_rows(self._pool, session_id, after_seq=after_seq, limit=limit)

    async def read_all(
        self, *, after: Position | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Global catch-up: the next events of all sessions by (tx, position), never passing a
        transaction that has yet to commit."""
        return await reader.read_all(self._pool, after=after, limit=limit)

    def read_audio(self, session_id: str, *, stream: AudioStream) -> AsyncIterator[AudioFrame]:
        """Each recorded frame of the stream, in order, with its offset and receive time."""
        return reader.read_audio(self._pool, session_id, stream=stream)

    async def read_audio_bytes(self, session_id: str, *, stream: AudioStream) -> bytes:
        """The stream's audio concatenated (holes from a crash are zero-filled silence)."""
        return await reader.read_audio_bytes(self._pool, session_id, stream=stream)

    async def last_seq(self, session_id: str) -> int:
        """The last recorded seq of the session (0 if none), ignoring unflushed appends."""
        value = await self._pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM session_events WHERE session_id = $1", session_id
        )
        return int(value)

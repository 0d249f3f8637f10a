"""The background half of the append path: one task per process writes every session's queue.

Why shared: a writer per session flushing on its own tick cost each session ~20 COPY
transactions a second, each a pool checkout, BEGIN, COPY and COMMIT, so at 100 sessions the
gateway spent most of its time in socket writes to Postgres and Postgres in commits. One task
writes the events of every session due in a tick with one COPY (and the sealed audio chunks with
a second, on another connection at the same time), so the cost of a tick is per process, not per
session.

What stays per session:
- order and the gapless seq: a writer's events go into the batch in seq order, and a tick takes
  a writer's whole queue or none of it, under the writer's own flush lock (an awaited
  `flush()` and a tick never overlap for one session);
- a conflict fails loudly: a COPY that breaks a unique key rolls back as a whole (nothing of the
  batch is written), and every writer in it is then flushed alone, so only the writer that met
  another writer's rows stops (`WriterConflict`), and the same for data Postgres refuses;
- doubt: after a transient failure (a dropped connection, Postgres restarting) the batch may or
  may not have committed, so each of its writers is marked in doubt and flushed alone next time,
  which checks before writing again (`SessionWriter._skip_committed`);
- the outage budget: each writer counts how long its writes have failed and sets `overflowed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.store.events import StoreError, WriterFailed

if TYPE_CHECKING:
    from services.store.writer import ChunkRecord, EventRecord, SessionWriter

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

EVENT_COLUMNS = (
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
CHUNK_COLUMNS = ("session_id", "stream", "start_offset", "data", "frame_offsets", "frame_times")

RETRY_MAX_DELAY = 2.0


async def copy_rows(
    pool: asyncpg.Pool, table: str, records: list[Any], columns: tuple[str, ...]
) -> None:
    """One COPY, which is one statement and so its own transaction: all of `records` or none."""
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(table, records=records, columns=columns)


class Flusher:
    """Writes the queues of the writers added to it, every `interval` (or sooner when one asks).

    An `EventStore` has one for all its writers; a writer made without one gets its own. The
    task runs only while writers are registered."""

    def __init__(self, pool: asyncpg.Pool, *, interval: float) -> None:
        self._pool = pool
        self.interval = interval
        self._writers: dict[SessionWriter, None] = {}  # registration order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._delay = interval
        self.ticks = 0
        """Ticks that wrote something (for tests and benchmarks)."""

    def add(self, writer: SessionWriter) -> None:
        self._writers[writer] = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="store-flusher")
            self._task.add_done_callback(self._died)

    def remove(self, writer: SessionWriter) -> None:
        self._writers.pop(writer, None)

    def wake(self) -> None:
        """Run a tick now (a writer's backlog is large, or it is closing)."""
        self._wake.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self._writers:
            try:
                async with asyncio.timeout(self._delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.tick()

    def _died(self, task: asyncio.Task[None]) -> None:
        """A flusher that dies of a bug must not leave appends queueing silently forever."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("the event store flusher died", exc_info=exc)
        for writer in list(self._writers):
            writer._stop(WriterFailed(f"session {writer.session_id}: the flusher died ({exc!r})"))

    async def tick(self) -> None:
        """One pass: every due writer's queue, batched; writers in doubt alone."""
        now = time.monotonic()
        batch: list[tuple[SessionWriter, list[EventRecord], list[ChunkRecord]]] = []
        alone: list[SessionWriter] = []
        for writer in list(self._writers):
            # A writer flushing itself (an awaited flush or close) is skipped; so is one whose
            # own cadence is not due (tests that want only explicit flushes set a long one).
            if writer._flush_lock.locked() or not writer._due(now):
                continue
            if not writer._ready_for_tick(now):
                continue
            # Free (checked just above), so this returns without suspending.
            await writer._flush_lock.acquire()
            if writer._in_doubt:
                alone.append(writer)
            else:
                batch.append((writer, *writer._take()))
        if not batch and not alone:
            return
        self.ticks += 1
        transient = False
        try:
            if batch:
                retry_alone, transient = await self._write_batch(batch)
                alone += retry_alone
            for writer in alone:
                transient |= await self._flush_alone(writer)
        finally:
            for writer in {w for w, _, _ in batch} | set(alone):
                writer._flush_lock.release()
        self._delay = (
            min(max(self._delay * 2, 0.1), RETRY_MAX_DELAY) if transient else self.interval
        )

    async def _write_batch(
        self, batch: list[tuple[SessionWriter, list[EventRecord], list[ChunkRecord]]]
    ) -> tuple[list[SessionWriter], bool]:
        """Writes the batch; returns the writers to flush alone now (their part of a batch that
        Postgres refused, for a reason that may be one session's), and whether it failed
        transiently."""
        events = [record for _, queued, _ in batch for record in queued]
        chunks = [record for _, _, sealed in batch for record in sealed]
        attributes: dict[str, str | int | bool] = {
            "store.sessions": len(batch),
            "store.events": len(events),
            "store.audio_chunks": len(chunks),
            "store.audio_bytes": sum(len(c[3]) for c in chunks),
            "store.background": True,
        }
        with _tracer.start_as_current_span(
            "store.flush", context=otel_context.Context(), attributes=attributes
        ) as span:
            writes: list[Awaitable[None]] = []
            if events:
                writes.append(copy_rows(self._pool, "session_events", events, EVENT_COLUMNS))
            if chunks:
                writes.append(copy_rows(self._pool, "audio_chunks", chunks, CHUNK_COLUMNS))
            try:
                results = await asyncio.gather(*writes, return_exceptions=True)
            except BaseException:
                for writer, queued, sealed in batch:  # cancelled: nothing is known
                    writer._requeue(queued, sealed)
                raise
            events_error = results[0] if events else None
            chunks_error = results[-1] if chunks else None
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(errors[0])))
            # A refused COPY (a key, the data) rolled back whole: its part is requeued as
            # certainly not written, and each writer in it flushes alone so the one at fault is
            # found. A transient failure may have committed: its part is requeued in doubt. The
            # two COPYs fail or not each on its own, so each part is judged by its own error.
            events_refused = isinstance(events_error, BaseException) and not transient(events_error)
            chunks_refused = isinstance(chunks_error, BaseException) and not transient(chunks_error)
            retry_alone: list[SessionWriter] = []
            for writer, queued, sealed in batch:
                failed_events = queued if isinstance(events_error, BaseException) else []
                failed_chunks = sealed if isinstance(chunks_error, BaseException) else []
                if queued and not failed_events:
                    writer._committed(queued)
                if not failed_events and not failed_chunks:
                    writer._flush_succeeded()
                    continue
                writer._requeue(failed_events, [], doubt=not events_refused)
                writer._requeue([], failed_chunks, doubt=not chunks_refused)
                if (failed_events and events_refused) or (failed_chunks and chunks_refused):
                    retry_alone.append(writer)
                else:
                    writer._flush_failed(errors[0])
            return retry_alone, any(transient(e) for e in errors)

    async def _flush_alone(self, writer: SessionWriter) -> bool:
        """Flushes one writer (its lock held); True if it failed transiently."""
        try:
            await writer._flush_locked(background=True)
        except StoreError:
            return False  # stopped for good; already logged
        except Exception as exc:
            writer._flush_failed(exc)
            return True
        writer._flush_succeeded()
        return False


def transient(exc: BaseException) -> bool:
    """Whether retrying the same batch may succeed (connection trouble, shutdown, overload)
    rather than fail the same way forever (bad data, a missing grant, a conflict).

    Only errors known to be about the data are permanent; anything else (a connection that
    broke mid-COPY can surface as an asyncpg protocol or internal client error) is retried
    with backoff, within the writer's bounded buffer."""
    if isinstance(exc, asyncpg_base.DataError | ValueError | TypeError):
        return False  # client-side encoding of a record failed
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] not in {"22", "23", "42", "P0"}
    return True

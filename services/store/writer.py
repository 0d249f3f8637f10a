"""The append path: one writer per session, seq assigned in memory, batches written with COPY.

Why this shape: a voice session produces ~100 events a second (50 audio frames each way plus
model events), and the gateway's hot path must never wait for Postgres. So `append` is a plain
synchronous call that numbers the event and queues it; a background task writes the queue every
~50 ms (or sooner under a burst) with COPY: the process's one `Flusher` (flusher.py) writes the
events of every session due in that tick with one COPY, and the audio chunks ready with a
second on another connection at the same time (one INSERT per transaction manages ~4k
events/s on these machines, COPY batches >100k/s). Flushes of one session never overlap, so the
durable events are always a gapless prefix. A caller that must
not act before an event is durable (a tool about to run, a session about to end) awaits
`flush()`.

Durability trade-off, by design:
- events are durable within ~50 ms of `append` (plus the flush's own time);
- audio bytes are gathered into ~1 s chunks (48,000 bytes of 24 kHz PCM16) and a chunk is
  written when it is full, when its oldest frame has waited ~1 s, or on `flush()`/`close()`.
  So a crash can lose up to ~1 s of audio whose events were already durable; the next writer
  for the session starts its audio after every offset an event refers to, leaving a hole
  rather than ever reusing an offset.

Correctness rests on the primary key (session_id, seq): if another process writes the same
session, the loser's COPY hits a unique violation and the writer stops loudly (`WriterConflict`
on every later call) rather than interleaving or renumbering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.store.events import (
    AUDIO_STREAMS,
    AudioStream,
    DuplicateClientEvent,
    StoreError,
    WriterClosed,
    WriterConflict,
    WriterFailed,
)
from services.store.flusher import CHUNK_COLUMNS, EVENT_COLUMNS, Flusher, copy_rows, transient

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_MAX_AGE",
    "FLUSH_INTERVAL",
    "DuplicateClientEvent",
    "SessionWriter",
    "WriterClosed",
    "WriterConflict",
    "WriterFailed",
]

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

FLUSH_INTERVAL = 0.05
"""Seconds between background flushes: the bound on how long an appended event is volatile."""

FLUSH_SOON_EVENTS = 4_000
"""Pending events that wake the flusher before its tick, bounding batch size under bursts."""

CHUNK_BYTES = 48_000
"""Audio chunk size: one second of 24 kHz mono PCM16."""

CHUNK_MAX_AGE = 0.25
"""Seconds a chunk's oldest frame may wait before the chunk is written even if not full: what
a SIGKILLed gateway can lose of each audio stream (its events flush every 50 ms)."""


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


BUFFER_SECONDS = _env_float("EARPIECE_STORE_BUFFER_SECONDS", 60.0)
"""How long a writer keeps accepting events while Postgres cannot be written (a restart, a
dropped connection). Past it the writer sets `overflowed` so that the session is told and
ended; it keeps what it holds and keeps retrying, so nothing accepted is dropped."""

DEDUP_WINDOW = 4096
"""Recent client event ids a writer keeps in memory; older ones are looked up in Postgres."""

_BLOOM_BITS = 1 << 20  # 128 KiB per writer: ~1% false positives at 100k ids
_BLOOM_HASHES = 5

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

EventRecord = tuple[
    str,
    int,
    str,
    str,
    str,
    datetime | None,
    datetime,
    str | None,
    str | None,
    int | None,
    int | None,
    str,
]
ChunkRecord = tuple[str, str, int, bytes, list[int], list[datetime]]


class _Chunk:
    """The audio chunk being gathered for one stream."""

    __slots__ = ("data", "first_at", "frame_offsets", "frame_times", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.data = bytearray()
        self.frame_offsets: list[int] = []
        self.frame_times: list[datetime] = []
        self.first_at = 0.0  # monotonic time the first frame arrived


def _event_id_prefix() -> str:
    """A random UUIDv8 prefix (74 random bits); ids are prefix + 48-bit seq.

    str(uuid4()) costs ~3 µs, a third of the per-event budget at 100k events/s; this is one
    f-string. Ids stay unique across writers of a session (each writer draws its own prefix)."""
    r = secrets.randbits(74)
    return (
        f"{r >> 42:08x}-{(r >> 26) & 0xFFFF:04x}-8{(r >> 14) & 0xFFF:03x}-"
        f"{0x8000 | (r & 0x3FFF):04x}-"
    )


def _payload_text(payload: dict[str, Any] | str) -> str:
    """The payload as JSON text, checked here so that the caller gets the error: Postgres or
    the encoder refusing one row later would fail a whole batch and stop the writer."""
    if isinstance(payload, str):
        json.loads(payload)  # kept verbatim, but it must be JSON
        text = payload
    else:
        text = _encode_json(payload)
    if not text.isascii():  # O(1) for the common case
        text.encode()  # a lone surrogate cannot be sent as UTF-8
    return text


def _check_fields(
    kind: str,
    source: str,
    event_id: str | None,
    client_event_id: str | None,
    producer_time: datetime | None,
) -> None:
    """Refuses, at append time, what Postgres would refuse at flush time (a NUL in text, a
    time without a zone), and empty kinds or sources."""
    if (
        not kind
        or not source
        or "\x00" in kind
        or "\x00" in source
        or (event_id is not None and "\x00" in event_id)
        or (client_event_id is not None and "\x00" in client_event_id)
    ):
        raise ValueError("kind, source and ids must be non-empty strings without NUL characters")
    if producer_time is not None and producer_time.tzinfo is None:
        raise ValueError("producer_time must be a timezone-aware datetime")


class ClientIdIndex:
    """Which client event ids a session has used, in bounded memory.

    The last DEDUP_WINDOW ids (and every id not yet durable) are kept exactly; every id ever
    added also goes into a fixed-size Bloom filter. An id outside the window that the filter
    says may have been used is looked up in Postgres, the authority (a unique index on
    (session_id, client_event_id) backs it). So memory stays flat however long the session,
    and almost every new id costs no query."""

    __slots__ = ("_bits", "_recent", "older", "window")

    def __init__(self, ids: Iterable[tuple[str, int]] = (), *, window: int = DEDUP_WINDOW) -> None:
        self.window = window
        self._recent: dict[str, int] = {}  # id -> seq, oldest first
        self._bits = bytearray(_BLOOM_BITS // 8)
        self.older = False  # whether some ids left the window
        for cid, seq in ids:
            self.add(cid, seq, durable_seq=seq)

    @staticmethod
    def _positions(cid: str) -> list[int]:
        # The filter lives in this process only, so the interpreter's own string hash serves
        # (a blake2b digest per client message was a visible cost at 50 frames a second);
        # its two halves give the k positions by double hashing.
        h = hash(cid) & 0xFFFF_FFFF_FFFF_FFFF
        h1, h2 = h & 0xFFFF_FFFF, (h >> 32) | 1
        return [(h1 + i * h2) % _BLOOM_BITS for i in range(_BLOOM_HASHES)]

    def __contains__(self, cid: object) -> bool:
        return cid in self._recent

    def __len__(self) -> int:
        return len(self._recent)

    def add(self, cid: str, seq: int, *, durable_seq: int) -> None:
        self._recent[cid] = seq
        bits = self._bits
        for p in self._positions(cid):
            bits[p >> 3] |= 1 << (p & 7)
        self.trim(durable_seq)

    def trim(self, durable_seq: int) -> None:
        """Forgets the oldest ids beyond the window, but never one that is not yet durable
        (Postgres could not answer for it)."""
        recent = self._recent
        while len(recent) > self.window:
            cid, seq = next(iter(recent.items()))
            if seq > durable_seq:
                return
            del recent[cid]
            self.older = True

    def maybe_older(self, cid: str) -> bool:
        """Whether `cid` may be an id that left the window (False: certainly not)."""
        if not self.older:
            return False
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(cid))


class SessionWriter:
    """Appends one session's events. Get it from `EventStore.open_writer`; one per session per
    process. Not thread-safe: use it from the event loop that opened it."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        session_id: str,
        last_seq: int,
        seen: ClientIdIndex | set[str],
        audio_ends: dict[AudioStream, int],
        flush_interval: float = FLUSH_INTERVAL,
        on_release: Callable[[SessionWriter], None] | None = None,
        buffer_seconds: float | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        """`flusher` writes the queue in the background (an `EventStore` shares one among its
        writers); without one the writer gets its own. `flush_interval` is this writer's own
        cadence within the flusher's ticks."""
        self.session_id = session_id
        self._pool = pool
        self._seq = last_seq
        self._durable_seq = last_seq
        self._seen = seen if isinstance(seen, ClientIdIndex) else ClientIdIndex()
        if not isinstance(seen, ClientIdIndex):
            for cid in seen:
                self._seen.add(cid, last_seq, durable_seq=last_seq)
        self.buffer_seconds = BUFFER_SECONDS if buffer_seconds is None else buffer_seconds
        self.overflowed = asyncio.Event()
        """Set once Postgres has refused writes for longer than `buffer_seconds`."""
        self._failing_since: float | None = None
        self._drained = asyncio.Event()
        self._chunks: dict[str, _Chunk] = {s: _Chunk(audio_ends.get(s, 0)) for s in AUDIO_STREAMS}
        self._pending: list[EventRecord] = []
        self._sealed: list[ChunkRecord] = []
        self._id_prefix = _event_id_prefix()
        self._interval = flush_interval
        self._on_release = on_release
        self._failure: StoreError | None = None
        self._closing = False
        self._closed = False
        # How many queued events / chunks (from the front) were in a batch whose commit may or
        # may not have happened; checked before the next write.
        self._doubt_events = 0
        self._doubt_chunks = 0
        self._flush_lock = asyncio.Lock()
        self._next_due = time.monotonic() + flush_interval
        self._urgent = False
        self._flusher = flusher or Flusher(pool, interval=flush_interval)
        self._flusher.add(self)

    # -- state -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the last event appended (durable or not)."""
        return self._seq

    @property
    def durable_seq(self) -> int:
        """The seq of the last event known to be committed."""
        return self._durable_seq

    @property
    def closed(self) -> bool:
        return self._closed or self._failure is not None

    @property
    def closing(self) -> bool:
        """close() was called; the writer may still be writing what it holds."""
        return self._closing

    @property
    def pending_events(self) -> int:
        """Events appended and not yet known to be durable."""
        return len(self._pending)

    @property
    def failing_for(self) -> float:
        """Seconds since writes started failing (0 while they succeed)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    def seen(self, client_event_id: str) -> bool:
        """Whether this client id is among the session's recent ids (every id not yet durable
        is). An older id may still be recorded: `is_duplicate` asks Postgres about those."""
        return client_event_id in self._seen

    async def is_duplicate(self, client_event_id: str) -> bool:
        """Whether an event with this client id is already recorded (or queued) for the session,
        in this process or by an earlier writer. The gateway asks before appending, so a
        repeated client message is acknowledged as a duplicate and recorded once. Raises the
        connection error if Postgres must be asked and cannot answer."""
        if client_event_id in self._seen:
            return True
        if not self._seen.maybe_older(client_event_id):
            return False
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM session_events"
                " WHERE session_id = $1 AND client_event_id = $2)",
                self.session_id,
                client_event_id,
            )
        )

    async def drained(self) -> None:
        """Waits until a closing writer has written everything it held."""
        await self._drained.wait()

    # -- appends (synchronous, never wait) ----------------------------------------------------

    def append(
        self,
        *,
        kind: str,
        source: str,
        payload: dict[str, Any] | str,
        event_id: str | None = None,
        client_event_id: str | None = None,
        producer_time: datetime | None = None,
    ) -> int:
        """Queues one event and returns its seq. A str payload is stored verbatim (it must be
        JSON); a dict is encoded compactly. Raises DuplicateClientEvent for a repeated client
        id, and WriterConflict/WriterFailed/WriterClosed once the writer has stopped."""
        if self._failure is not None or self._closing:
            self._raise_stopped()
        _check_fields(kind, source, event_id, client_event_id, producer_time)
        text = _payload_text(payload)
        if client_event_id is not None and client_event_id in self._seen:
            raise DuplicateClientEvent(client_event_id)
        self._seq = seq = self._seq + 1
        if client_event_id is not None:
            self._seen.add(client_event_id, seq, durable_seq=self._durable_seq)
        pending = self._pending
        pending.append(
            (
                self.session_id,
                seq,
                event_id or f"{self._id_prefix}{seq:012x}",
                kind,
                source,
                producer_time,
                datetime.now(UTC),
                client_event_id,
                None,
                None,
                None,
                text,
            )
        )
        if len(pending) >= FLUSH_SOON_EVENTS:
            self._urgent = True
            self._flusher.wake()
        return seq

    def append_audio(
        self,
        *,
        stream: AudioStream,
        pcm: bytes,
        kind: str,
        source: str,
        payload: dict[str, Any],
        event_id: str | None = None,
        client_event_id: str | None = None,
        producer_time: datetime | None = None,
    ) -> int:
        """Queues one audio frame: its bytes go into the stream's current chunk, and an event
        whose payload gains `"audio": {"stream", "offset", "length"}` points at them. Returns
        the event's seq. The frame's recorded time is the event's receive time."""
        if self._failure is not None or self._closing:
            self._raise_stopped()
        chunk = self._chunks.get(stream)
        if chunk is None:
            raise ValueError(f"unknown audio stream {stream!r}; expected one of {AUDIO_STREAMS}")
        if "audio" in payload:
            raise ValueError("payload already has an 'audio' key; the writer sets it")
        _check_fields(kind, source, event_id, client_event_id, producer_time)
        if client_event_id is not None and client_event_id in self._seen:
            raise DuplicateClientEvent(client_event_id)
        length = len(pcm)
        within = len(chunk.data)
        offset = chunk.start + within
        # The audio reference is formatted directly (stream is one of two known words):
        # encoding a merged dict per frame was the largest cost of the audio hot path.
        ref = f'"audio":{{"stream":"{stream}","offset":{offset},"length":{length}}}}}'
        text = f"{_payload_text(payload)[:-1]},{ref}" if payload else "{" + ref
        now = datetime.now(UTC)
        if not chunk.frame_offsets:
            chunk.first_at = time.monotonic()
        chunk.data += pcm
        chunk.frame_offsets.append(within)
        chunk.frame_times.append(now)
        self._seq = seq = self._seq + 1
        if client_event_id is not None:
            self._seen.add(client_event_id, seq, durable_seq=self._durable_seq)
        pending = self._pending
        pending.append(
            (
                self.session_id,
                seq,
                event_id or f"{self._id_prefix}{seq:012x}",
                kind,
                source,
                producer_time,
                now,
                client_event_id,
                stream,
                offset,
                length,
                text,
            )
        )
        if within + length >= CHUNK_BYTES:
            self._seal(stream)
        if len(pending) >= FLUSH_SOON_EVENTS:
            self._urgent = True
            self._flusher.wake()
        return seq

    # -- durability ---------------------------------------------------------------------------

    async def flush(self) -> int:
        """Makes everything appended so far durable, including audio not yet in a full chunk;
        returns the last durable seq. Raises if the write fails (a transient failure keeps the
        batch queued, so calling again retries it)."""
        if self._failure is not None:
            self._raise_stopped()
        self._seal_all()
        async with self._flush_lock:
            await self._flush_locked(background=False)
        return self._durable_seq

    async def close(self) -> None:
        """Flushes everything and stops the background task. If the final flush fails
        transiently (Postgres restarting, a dropped connection) the error is raised, and the
        writer keeps retrying in the background until all it holds is written; then it
        releases itself (`drained()` returns). close() may be called again meanwhile. A
        conflict or permanent failure is raised here too."""
        if self._closed:
            return
        self._closing = True
        if self._failure is None:
            self._seal_all()
            try:
                async with self._flush_lock:
                    await self._flush_locked(background=False)
            except StoreError:
                pass  # the writer has stopped; raised below
            except BaseException:
                self._flusher.wake()  # closing writers are always due: it retries at once
                raise
        self._finish()
        if self._failure is not None:
            self._raise_stopped()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drained.set()
        self._release()

    # -- internals ----------------------------------------------------------------------------

    def _raise_stopped(self) -> None:
        failure = self._failure
        if failure is not None:  # a fresh instance each time, so tracebacks do not pile up
            raise type(failure)(str(failure))
        raise WriterClosed(f"the writer for session {self.session_id} is closed")

    def _seal(self, stream: str) -> None:
        chunk = self._chunks[stream]
        if not chunk.frame_offsets:
            return
        self._sealed.append(
            (
                self.session_id,
                stream,
                chunk.start,
                bytes(chunk.data),
                chunk.frame_offsets,
                chunk.frame_times,
            )
        )
        self._chunks[stream] = _Chunk(chunk.start + len(chunk.data))

    def _seal_all(self) -> None:
        for stream in AUDIO_STREAMS:
            self._seal(stream)

    def _seal_aged(self) -> None:
        now = time.monotonic()
        for stream, chunk in self._chunks.items():
            if chunk.frame_offsets and now - chunk.first_at >= CHUNK_MAX_AGE:
                self._seal(stream)

    # -- the flusher's side (flusher.py); each is called with no await in between ----------

    def _due(self, now: float) -> bool:
        """Every tick, unless this writer asked for a slower cadence than the flusher's."""
        return (
            self._interval <= self._flusher.interval
            or self._closing
            or self._urgent
            or now >= self._next_due
        )

    def _ready_for_tick(self, now: float) -> bool:
        """Seals what the tick should write; False if there is nothing (a closing writer with
        nothing left is finished here: its close() failed earlier and it has now drained)."""
        self._next_due = now + self._interval
        self._urgent = False
        if self._closing:
            self._seal_all()  # a close() whose flush failed: write everything
        else:
            self._seal_aged()
        if self._pending or self._sealed:
            return True
        if self._closing and self._failure is None:
            self._finish()
        return False

    @property
    def _in_doubt(self) -> bool:
        return bool(self._doubt_events or self._doubt_chunks)

    def _take(self) -> tuple[list[EventRecord], list[ChunkRecord]]:
        events, chunks = self._pending, self._sealed
        self._pending, self._sealed = [], []
        return events, chunks

    def _committed(self, events: list[EventRecord]) -> None:
        self._durable_seq = events[-1][1]
        self._seen.trim(self._durable_seq)

    def _flush_succeeded(self) -> None:
        if self._failing_since is not None:
            log.info(
                "event store writes for session %s resumed after %.1fs",
                self.session_id,
                time.monotonic() - self._failing_since,
            )
        self._failing_since = None

    def _flush_failed(self, exc: BaseException) -> None:
        """A transient failure of a background flush: counted against the outage budget."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        failing = now - self._failing_since
        log.warning(
            "event store flush for session %s failed (%s: %s); retrying with %d events queued "
            "(failing for %.0fs of at most %.0fs)",
            self.session_id,
            type(exc).__name__,
            exc,
            len(self._pending),
            failing,
            self.buffer_seconds,
        )
        if failing > self.buffer_seconds and not self.overflowed.is_set():
            log.error(
                "session %s: the event store has refused writes for %.0fs; the session is to be "
                "ended (%d events held, still being retried)",
                self.session_id,
                failing,
                len(self._pending),
            )
            self.overflowed.set()

    async def _flush_locked(self, *, background: bool) -> None:
        """Writes every pending event and sealed chunk. Holds the lock.

        Events and audio chunks go in two transactions on two connections at once: the chunk
        bytes dominate the server's work, and one session's flush would otherwise do both in
        series. Each part is atomic; either may land first, which the design already allows
        (an event may point at audio that is not yet durable, and a durable chunk whose events
        are lost in a crash is only audio without events)."""
        if self._failure is not None:
            self._raise_stopped()
        events, chunks = self._pending, self._sealed
        if not events and not chunks:
            return
        self._pending, self._sealed = [], []
        attributes: dict[str, str | int | bool] = {
            "earpiece.session_id": self.session_id,
            "store.events": len(events),
            "store.audio_chunks": len(chunks),
            "store.audio_bytes": sum(len(c[3]) for c in chunks),
            "store.background": background,
        }
        # A background flush is its own trace; an awaited one belongs to its caller's span.
        parent = otel_context.Context() if background else None
        with _tracer.start_as_current_span(
            "store.flush", context=parent, attributes=attributes
        ) as span:
            try:
                if self._doubt_events or self._doubt_chunks:
                    events, chunks = await self._skip_committed(events, chunks)
                writes: list[Awaitable[None]] = []
                if events:
                    writes.append(copy_rows(self._pool, "session_events", events, EVENT_COLUMNS))
                if chunks:
                    writes.append(copy_rows(self._pool, "audio_chunks", chunks, CHUNK_COLUMNS))
                results = await asyncio.gather(*writes, return_exceptions=True)
            except BaseException:
                # Cancelled, or the check failed: nothing is known to have been written.
                self._requeue(events, chunks)
                raise
            errors = [r for r in results if isinstance(r, BaseException)]
            events_error = results[0] if events else None
            chunks_error = results[-1] if chunks else None
            if not isinstance(events_error, BaseException) and events:
                self._committed(events)
            if not errors:
                return
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(errors[0])))
            conflict = next(
                (e for e in errors if isinstance(e, asyncpg.UniqueViolationError)), None
            )
            if conflict is not None:
                lost = len(self._pending) + (len(events) if events_error else 0)
                seqs = f"{events[0][1]}..{events[-1][1]}" if events else "-"
                stop = WriterConflict(
                    f"session {self.session_id}: another writer already recorded events or "
                    f"audio (seq {seqs}, {conflict.constraint_name or conflict}); this writer "
                    f"has stopped and dropped {lost} unflushed events"
                )
                self._stop(stop)
                raise WriterConflict(str(stop)) from conflict
            permanent = next((e for e in errors if not transient(e)), None)
            if permanent is not None:
                failed = WriterFailed(
                    f"session {self.session_id}: the database refused a batch of "
                    f"{len(events)} events ({type(permanent).__name__}: {permanent}); this "
                    "writer has stopped"
                )
                self._stop(failed)
                raise WriterFailed(str(failed)) from permanent
            # Transient: requeue what failed, in order; its commit may have happened anyway.
            self._requeue(
                events if isinstance(events_error, BaseException) else [],
                chunks if isinstance(chunks_error, BaseException) else [],
            )
            raise errors[0]

    def _requeue(
        self, events: list[EventRecord], chunks: list[ChunkRecord], *, doubt: bool = True
    ) -> None:
        """Puts a failed batch back in front of the queue and, if its commit may have happened,
        marks it in doubt, unless an earlier doubt is still unresolved (then that one is what
        must be checked)."""
        if events:
            self._pending = events + self._pending
            if doubt and not self._doubt_events:
                self._doubt_events = len(events)
        if chunks:
            self._sealed = chunks + self._sealed
            if doubt and not self._doubt_chunks:
                self._doubt_chunks = len(chunks)

    async def _skip_committed(
        self, events: list[EventRecord], chunks: list[ChunkRecord]
    ) -> tuple[list[EventRecord], list[ChunkRecord]]:
        """After a failure the batch in doubt may have committed after all (the connection
        broke during COMMIT). Writing it again would look like a conflict, so check its first
        row and drop it if it is there."""
        n_events, n_chunks = self._doubt_events, self._doubt_chunks
        async with self._pool.acquire() as conn:
            events_done = bool(n_events) and (
                await conn.fetchval(
                    "SELECT event_id FROM session_events WHERE session_id = $1 AND seq = $2",
                    self.session_id,
                    events[0][1],
                )
                == events[0][2]
            )
            chunks_done = bool(n_chunks) and bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM audio_chunks"
                    " WHERE session_id = $1 AND stream = $2 AND start_offset = $3)",
                    self.session_id,
                    chunks[0][1],
                    chunks[0][2],
                )
            )
        self._doubt_events = self._doubt_chunks = 0
        if events_done:
            log.info(
                "session %s: events in doubt had committed; not writing them again", self.session_id
            )
            self._durable_seq = events[n_events - 1][1]
            events = events[n_events:]
        if chunks_done:
            chunks = chunks[n_chunks:]
        return events, chunks

    def _stop(self, failure: StoreError) -> None:
        """Stops the writer for good, loudly."""
        self._failure = failure
        log.error("event store writer stopped: %s", failure)
        self._pending.clear()
        self._sealed.clear()
        self._drained.set()
        self._release()

    def _release(self) -> None:
        self._flusher.remove(self)
        if self._on_release is not None:
            self._on_release(self)
            self._on_release = None
